"""``python -m pbt``: the same command line as the ``pbt`` console script."""

import sys

from pbt.cli import main

sys.exit(main())
