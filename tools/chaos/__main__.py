"""``python -m tools.chaos``: see tools/chaos/cli.py."""

import sys

from tools.chaos.cli import main

sys.exit(main())
