"""`python -m vendor_repo` from tests/harness: the same build as tests/harness/vendor_repo.py."""

import sys

from .build import main

sys.exit(main())
