#!/usr/bin/env bash
# The Debian packages the tests need, installed when missing: `make system-packages` (which
# `make test` and so `.ci/run` depend on) calls this.
#   softhsm2  the PKCS#11 token of the HSM root-key tests (docs/key-custody.md)
#   chromium  the browser the console's Playwright tests drive (tests/console, docs/console.md);
#             Playwright's own browser downloads are never used
# It installs what is missing when it can (root, or sudo without a password) and otherwise
# says what to install. Under CI=true anything missing fails the run, so that the tests
# needing it never skip there unnoticed.
set -euo pipefail

missing=()
if ! command -v softhsm2-util >/dev/null 2>&1 || [ ! -e /usr/lib/softhsm/libsofthsm2.so ]; then
    missing+=(softhsm2)
fi
if [ ! -x /usr/bin/chromium ]; then
    missing+=(chromium)
fi
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    else
        as_root=(none)
    fi
fi

if [ "${as_root[0]:-}" != none ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} (Debian packages) for the tests"
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine may have no package lists yet: update once, then install.
    "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
        "${as_root[@]}" apt-get update -qq
        "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
    }
    exit 0
fi

echo "${missing[*]} not installed and this user cannot install them:" \
    "run 'sudo apt-get install ${missing[*]}' (Debian, Ubuntu);" \
    "until then the tests that need them are skipped" >&2
if [ "${CI:-}" = true ]; then
    exit 1
fi
