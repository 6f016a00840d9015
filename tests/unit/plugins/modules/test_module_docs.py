"""Every module's DOCUMENTATION, EXAMPLES and RETURN are YAML that ansible-doc can read.

A colon followed by a space inside a plain description line silently turns it into a mapping
and ansible-doc then refuses the whole module; this catches it before lint output does.
"""

import importlib
from pathlib import Path

import pytest
import yaml

MODULES = sorted(
    path.stem
    for path in (Path(__file__).resolve().parents[4] / "plugins" / "modules").glob("*.py")
    if path.stem != "__init__"
)


@pytest.mark.parametrize("name", MODULES)
def test_documentation_is_yaml_with_options_and_attributes(name):
    module = importlib.import_module(
        f"ansible_collections.llmops.gpu_serving.plugins.modules.{name}"
    )
    doc = yaml.safe_load(module.DOCUMENTATION)
    assert doc["module"] == name
    assert isinstance(doc["options"], dict)
    assert {"check_mode", "diff_mode"} <= set(doc["attributes"])
    for option, spec in doc["options"].items():
        assert spec.get("description"), f"{name}: option {option} has no description"
    assert yaml.safe_load(module.EXAMPLES)
    assert isinstance(yaml.safe_load(module.RETURN), dict)
