"""Isolation for module tests that run several modules' main() in one process.

ansible-core keeps a module's warnings and deprecations in process-wide dicts (a real module
runs once per process, so nothing clears them); without this, a warning raised by one test
leaks into, or is deduplicated away from, the next. And once any test has imported controller
code (the filter tests do), ansible-core sends warn() to the controller's display instead of the
module result; a module under test must behave as on a target host.
"""

import pytest
from ansible.module_utils import _internal
from ansible.module_utils.common import warnings as ansible_warnings


@pytest.fixture(autouse=True)
def _fresh_module_warnings(monkeypatch):
    monkeypatch.setattr(_internal, "is_controller", False)
    ansible_warnings._global_warnings.clear()
    ansible_warnings._global_deprecations.clear()
    yield
    ansible_warnings._global_warnings.clear()
    ansible_warnings._global_deprecations.clear()
