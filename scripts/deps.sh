#!/usr/bin/env bash
# Installs the Debian packages cimap needs to build, run and test, if any are missing.
# Idempotent; uses sudo when not root. Usage: scripts/deps.sh [--test]
#   --test  also the test tools (clang for the fuzzers and the second compiler, curl, cppcheck,
#           clang-tidy, python3, openssl for the TLS tests' certificates and s_client, and the
#           sync clients of tests/integration/test_sync_clients.py: isync, offlineimap3, getmail6;
#           postfix for test_lda.py and dovecot-imapd for test_maildir.py — postfix's debconf
#           question is preseeded "No configuration": the tests run private instances only;
#           haproxy for deploy/local and its test, nodejs and shellcheck for the deploy checks)
set -euo pipefail

build_pkgs=(build-essential cmake pkg-config libhiredis-dev libevent-dev libssl-dev uuid-dev
            libcmocka-dev libcrypt-dev redis-server)
test_pkgs=(clang libclang-rt-14-dev curl cppcheck clang-tidy python3 openssl
           isync offlineimap3 getmail6 postfix dovecot-imapd haproxy nodejs shellcheck)

want=("${build_pkgs[@]}")
if [[ "${1:-}" == "--test" ]]; then
    want+=("${test_pkgs[@]}")
fi

missing=()
for p in "${want[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
    sudo="sudo"
fi
echo "Installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if [[ " ${missing[*]} " == *" postfix "* ]]; then
    echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
fi
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts a system redis-server on 6379 when it installs; cimap never uses it.
