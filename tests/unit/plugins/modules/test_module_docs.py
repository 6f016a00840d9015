"""Every module's DOCUMENTATION, EXAMPLES and RETURN are YAML that ansible-doc can read.

A colon followed by a space inside a plain description line silently turns it into a mapping
and ansible-doc then refuses the whole module; this catches it before lint output does.
"""

import importlib
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[4]
MODULES = sorted(
    path.stem
    for path in (REPO_ROOT / "plugins" / "modules").glob("*.py")
    if path.stem != "__init__"
)


def merge_own_fragments(doc: dict) -> None:
    """Merge the options and attributes of this collection's documentation fragments
    (plugins/doc_fragments) that ``doc`` extends, the module's own entries winning, as
    ansible-doc does (ansible.builtin's fragments document only their own attributes)."""
    for fragment in doc.get("extends_documentation_fragment", []):
        namespace, _, name = fragment.rpartition(".")
        if namespace != "llmops.gpu_serving":
            continue
        text = importlib.import_module(
            f"ansible_collections.llmops.gpu_serving.plugins.doc_fragments.{name}"
        ).ModuleDocFragment.DOCUMENTATION
        part = yaml.safe_load(text)
        for key in ("options", "attributes"):
            doc[key] = {**(part.get(key) or {}), **(doc.get(key) or {})}


@pytest.mark.parametrize("name", MODULES)
def test_documentation_is_yaml_with_options_and_attributes(name):
    module = importlib.import_module(
        f"ansible_collections.llmops.gpu_serving.plugins.modules.{name}"
    )
    doc = yaml.safe_load(module.DOCUMENTATION)
    merge_own_fragments(doc)
    assert doc["module"] == name
    assert isinstance(doc["options"], dict)
    assert {"check_mode", "diff_mode"} <= set(doc["attributes"])
    for option, spec in doc["options"].items():
        assert spec.get("description"), f"{name}: option {option} has no description"
    assert yaml.safe_load(module.EXAMPLES)
    assert isinstance(yaml.safe_load(module.RETURN), dict)
