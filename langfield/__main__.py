"""``python -m langfield`` = the ``langfield`` command."""

import sys

from langfield.cli import main

if __name__ == "__main__":
    sys.exit(main())
