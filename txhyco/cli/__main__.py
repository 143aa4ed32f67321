"""``python -m txhyco.cli``: the same as the ``txhyco`` console script."""
import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
