"""Let the integration tests import their shared helpers (vllm_it.py) under importlib mode."""

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
