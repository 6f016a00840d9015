#!/usr/bin/env python3
"""Build the simulated vendor apt repositories: the launcher of the package vendor_repo/ beside it.

`make harness` runs this file; the repositories are built by tests/harness/vendor_repo/, one
module per kind of repository (its __init__ lists them). Python finds the package before this
file under the same name, so `import vendor_repo` below is the package.
"""

import sys

from vendor_repo.build import main

if __name__ == "__main__":
    sys.exit(main())
