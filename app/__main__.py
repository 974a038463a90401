"""``python -m app``: the ``keyledger`` command, for a checkout without the console script."""

import sys

from app.entrypoints.cli.main import main

sys.exit(main())
