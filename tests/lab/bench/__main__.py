"""``python -m tests.lab.bench``: the benchmark (root)."""

import sys

from tests.lab.bench.main import main

sys.exit(main())
