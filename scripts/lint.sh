#!/usr/bin/env bash
# Static analysis over the project's own C sources (not generated files, not tests' fixtures).
#   scripts/lint.sh cppcheck    cppcheck, warning/performance/portability, any finding fails
#                               (ctuuninitvar is off: its cross-file analysis takes a buffer that
#                               vsnprintf fills for a read of uninitialised memory)
#   scripts/lint.sh clang-tidy  clang-tidy with the checks in .clang-tidy, any finding fails
#                               (needs build/compile_commands.json: run the gcc build first)
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t sources < <(git ls-files 'frontend/*.c' 'frontend/mail/*.c' 'keys/*.c' 'lua/*.c' 'admin/*.c')
case "${1:-}" in
cppcheck)
    cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
        --inline-suppr --std=c11 -I . -D__GNUC__ --suppress=missingIncludeSystem \
        --suppress=ctuuninitvar "${sources[@]}"
    ;;
clang-tidy)
    [[ -f build/compile_commands.json ]] || { echo "run the build first" >&2; exit 1; }
    clang-tidy --quiet -p build --warnings-as-errors='*' "${sources[@]}" 2>/dev/null
    ;;
*)
    echo "usage: scripts/lint.sh cppcheck|clang-tidy" >&2
    exit 64
    ;;
esac
