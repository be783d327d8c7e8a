"""`python -m streams.cli …` runs the `everflow` command line."""

import sys

from streams.cli import main

sys.exit(main())
