#!/usr/bin/env bash
# README command 2 (and what CI runs): every test, from a fresh clone.
#   1. gcc build (-Werror), unit tests (cmocka) and integration tests (real redis-server,
#      cimapd, cimap-admin, imaplib, curl) under ctest
#   2. the same suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   3. a clang build (-Werror)
#   4. the libFuzzer targets, each for a bounded time (FUZZ_SECONDS, default 60)
#   5. static analysis: cppcheck and clang-tidy (checks listed in .clang-tidy)
# Prints "N passed, N failed" at the end and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh --test || exit 1

jobs=$(nproc)
fuzz_seconds=${FUZZ_SECONDS:-60}
passed=0
failed=0
failures=()

step() {
    local name=$1
    shift
    echo "=== $name" >&2
    if "$@"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "=== FAILED: $name" >&2
    fi
}

build() {
    local dir=$1
    shift
    cmake -S . -B "$dir" "$@" >/dev/null && cmake --build "$dir" -j"$jobs"
}

suite() {
    (cd "$1" && ctest --output-on-failure -j2 --timeout 900)
}

step "gcc build" build build -DCMAKE_BUILD_TYPE=RelWithDebInfo
step "tests (gcc)" suite build
step "asan+ubsan build" build build-asan -DCMAKE_BUILD_TYPE=Debug -DCIMAP_SANITIZE=ON
step "tests (asan+ubsan)" suite build-asan
step "clang build" env CC=clang bash -c 'cmake -S . -B build-clang -DCIMAP_TESTS=OFF >/dev/null && cmake --build build-clang -j'"$jobs"
step "fuzz build" env CC=clang bash -c 'cmake -S . -B build-fuzz -DCIMAP_FUZZ=ON -DCIMAP_TESTS=OFF -DCMAKE_BUILD_TYPE=Debug >/dev/null && cmake --build build-fuzz -j'"$jobs"
for target in build-fuzz/tests/fuzz/fuzz_*; do
    [[ -x "$target" ]] || continue
    name=$(basename "$target")
    corpus="tests/fuzz/corpus/${name#fuzz_}"
    work=$(mktemp -d)
    cp -r "$corpus"/. "$work"/ 2>/dev/null || true
    step "fuzz $name ${fuzz_seconds}s" "$target" -max_total_time="$fuzz_seconds" -print_final_stats=1 "$work"
    rm -rf "$work"
done
step "deploy checks" bash -c 'deploy/docker/check.sh build && deploy/k8s/check.sh build/deploy-check'
step "cppcheck" scripts/lint.sh cppcheck
step "clang-tidy" scripts/lint.sh clang-tidy

echo
if [[ $failed -gt 0 ]]; then
    printf 'failed step: %s\n' "${failures[@]}"
fi
echo "summary: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
