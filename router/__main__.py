"""`python -m router` runs the tierwise CLI."""

import sys

from router.cli import main

sys.exit(main())
