#!/usr/bin/env bash
# SoftHSM2 (Debian package softhsm2): the PKCS#11 token the root-key tests run against
# (tests/infrastructure/test_pkcs11_root_key.py, docs/key-custody.md). `make test` and
# `.ci/run` call this: it installs the package when it can (root, or sudo without a
# password) and otherwise says what to install. Under CI=true a missing token fails the
# run, so that the HSM tests never skip there unnoticed.
set -euo pipefail

MODULE=/usr/lib/softhsm/libsofthsm2.so
if command -v softhsm2-util >/dev/null 2>&1 && [ -e "$MODULE" ]; then
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
    echo "installing softhsm2 (Debian package) for the PKCS#11 root-key tests"
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine may have no package lists yet: update once, then install.
    "${as_root[@]}" apt-get install -y -qq softhsm2 >/dev/null 2>&1 || {
        "${as_root[@]}" apt-get update -qq
        "${as_root[@]}" apt-get install -y -qq softhsm2
    }
    exit 0
fi

echo "softhsm2 is not installed and this user cannot install it:" \
    "run 'sudo apt-get install softhsm2' (Debian, Ubuntu);" \
    "until then the PKCS#11 root-key tests are skipped" >&2
if [ "${CI:-}" = true ]; then
    exit 1
fi
