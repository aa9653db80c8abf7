"""`python -m fleet` is the `fleet` console script."""

import sys

from fleet.cli import main

sys.exit(main())
