"""Make `ansible_collections.llmops.gpu_serving` importable from the checkout.

The repository holds a committed symlink collections/ansible_collections/llmops/gpu_serving ->
the repository root, the same one that lets `ansible-playbook site.yml` find the collection
without an install step. Putting its parent on sys.path makes the plugins importable exactly
as Ansible imports them.
"""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
COLLECTIONS_DIR = REPO_ROOT / "collections"

if str(COLLECTIONS_DIR) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS_DIR))
# tests/seed_deployment.py: the reference deployment's figures, shared by the unit tests.
if str(REPO_ROOT / "tests") not in sys.path:
    sys.path.insert(1, str(REPO_ROOT / "tests"))
