#!/usr/bin/env bash
# Kept for scripts that call it by name: every Debian package the tests need (SoftHSM2,
# chromium) is installed by tools/install-system-packages.sh.
exec bash "$(dirname "${BASH_SOURCE[0]}")/install-system-packages.sh" "$@"
