#!/usr/bin/env bash
# The console's screenshots in docs/images (docs/console.md): the browser tests
# (tests/console/test_console_browser.py) save them there instead of test-artifacts/.
# Needs `make .venv/.keyledger-dev.stamp system-packages` (Playwright, Debian's chromium).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
KEYLEDGER_CONSOLE_SCREENSHOTS="$PWD/docs/images" \
    .venv/bin/python -m pytest tests/console/test_console_browser.py -q -p no:cacheprovider "$@"
ls -l docs/images/console-*.png
