"""`python -m flux_async`."""

import sys

from flux_async.cli import main

sys.exit(main())
