"""`python -m gradserve ...`: the same as the `gradserve` command."""

import sys

from gradserve.server.cli import main

if __name__ == "__main__":
    sys.exit(main())
