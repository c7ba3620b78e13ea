"""``python -m skfwp.benchmark``: the benchmark command line."""

import sys

from .cli import main

if __name__ == "__main__":  # documentation tools import this module too
    sys.exit(main())
