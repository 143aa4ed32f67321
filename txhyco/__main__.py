"""``python -m txhyco``: the same as the ``txhyco`` console script."""
import sys

from txhyco.cli import main

if __name__ == "__main__":
    sys.exit(main())
