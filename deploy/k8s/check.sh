#!/usr/bin/env bash
# Renders deploy/k8s (the default install) and deploy/k8s/overlays/external-redis and validates
# the result offline. Run by scripts/test.sh ("deploy checks"); needs Node.js with npm, and the
# npm registry the first time (packages go to the build tree, never into the repository).
#
#   deploy/k8s/check.sh [WORKDIR]      (default build/deploy-check; also CIMAP_DEPLOY_CHECK_DIR)
#
# 1. render with deploy/k8s/check/render.mjs (the kustomize subset deploy/k8s uses), and with
#    `kubectl kustomize` too when a kubectl with kustomize v4+ is installed: both must agree.
# 2. validate.mjs: kubernetes-models' schema validators, unknown fields against the API types,
#    and cimap's own rules (probes, drain timing, selectors, references, Redis persistence).
# 3. selftest.mjs: broken variants of the default render (a typo, a wrong type, a short grace
#    period, Redis allowed to evict, ...) must each be rejected, so the checks keep biting.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=${1:-${CIMAP_DEPLOY_CHECK_DIR:-$root/build/deploy-check}}
mkdir -p "$work"
work=$(cd "$work" && pwd)

command -v node >/dev/null || { echo "check.sh: node not found (scripts/deps.sh --test installs nodejs)" >&2; exit 1; }
command -v npm >/dev/null || { echo "check.sh: npm not found (it comes with Node.js)" >&2; exit 1; }

# Install the pinned packages into $work/node_modules unless they are already there.
cp "$here/check/package.json" "$here"/check/*.mjs "$work"/
if ! cmp -s "$work/package.json" "$work/node_modules/.cimap-package.json" 2>/dev/null; then
    (cd "$work" && npm install --no-package-lock --no-audit --no-fund --loglevel=error >/dev/null)
    cp "$work/package.json" "$work/node_modules/.cimap-package.json"
fi

kubectl_ok=0
if command -v kubectl >/dev/null && kubectl kustomize "$here" >/dev/null 2>&1; then
    kubectl_ok=1
else
    echo "check.sh: no kubectl with kustomize v4+; rendering with render.mjs only" >&2
fi

status=0
check() { # NAME DIR [--full]
    local name=$1 dir=$2
    shift 2
    node "$work/render.mjs" "$dir" > "$work/$name.yaml" || return 1
    if [[ $kubectl_ok -eq 1 ]]; then
        kubectl kustomize "$dir" > "$work/$name.kubectl.yaml" || return 1
        node "$work/compare.mjs" "$work/$name.kubectl.yaml" "$work/$name.yaml" || return 1
    fi
    node "$work/validate.mjs" "$work/$name.yaml" "$@"
}
check default "$here" --full && node "$work/selftest.mjs" "$work/default.yaml" || status=1
check external-redis "$here/overlays/external-redis" || status=1
exit $status
