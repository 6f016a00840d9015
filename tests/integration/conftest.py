"""Let the integration tests import their shared helpers (vllm_it.py) under importlib mode;
the fixtures they share."""

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import pytest  # noqa: E402
from vllm_it import build_real_engine  # noqa: E402


@pytest.fixture(scope="module")
def real_engine():
    """The real CPU engine's image and the tiny model, built once (cached by the scripts)."""
    build_real_engine()
