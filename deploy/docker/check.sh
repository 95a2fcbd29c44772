#!/usr/bin/env bash
# Offline lint of deploy/docker/Dockerfile (no container engine runs in CI). Run by
# scripts/test.sh ("deploy checks"); needs apt's package lists (CI runs apt-get update first).
#
#   deploy/docker/check.sh [BUILD_DIR]     (BUILD_DIR with cimapd and cimap-admin; default build)
#
# Checks: every stage is Debian bookworm; the build stage runs scripts/deps.sh and CMake; every
# COPY source exists in the context and is not excluded by Dockerfile.dockerignore; every package
# the Dockerfile installs exists in Debian (apt-cache show); the runtime packages provide every
# shared library `ldd` reports for the built cimapd and cimap-admin; the final stage runs as a
# non-root numeric user, exposes 143 993 8080, has a HEALTHCHECK on the HTTP port and a cimapd
# ENTRYPOINT; shell scripts pass bash -n (and shellcheck when installed); the healthcheck script
# works against a stand-in HTTP server.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
df=$here/Dockerfile
fails=0
bad() { echo "docker check: $*" >&2; fails=$((fails + 1)); }

# Instructions, continuation lines joined, comments dropped.
mapfile -t instr < <(sed -e 's/[[:space:]]*$//' "$df" | grep -v '^[[:space:]]*#' |
    awk '/\\$/ { sub(/\\$/, ""); buf = buf $0 " "; next } { print buf $0; buf = "" }' | grep -v '^[[:space:]]*$')

stages=0
final_user="" final_expose="" final_health="" final_entry="" build_deps=0 build_cmake=0
runtime_pkgs=()
for line in "${instr[@]}"; do
    read -r op rest <<<"$line"
    case ${op^^} in
    FROM)
        stages=$((stages + 1))
        image=${rest%% *}
        [[ $image =~ ^debian:bookworm(-slim)?$ ]] || bad "stage $stages: FROM $image is not Debian bookworm"
        final_user="" final_expose="" final_health="" final_entry="" runtime_pkgs=()
        ;;
    RUN)
        [[ $stages -eq 1 && $rest == *scripts/deps.sh* ]] && build_deps=1
        [[ $stages -eq 1 && $rest == *"cmake --build"* ]] && build_cmake=1
        if [[ $rest == *"apt-get install"* ]]; then
            pkgs=$(sed -e 's/.*apt-get install//' -e 's/&&.*//' <<<"$rest")
            for p in $pkgs; do
                [[ $p == -* ]] && continue
                runtime_pkgs+=("$p")
                apt-cache show "$p" >/dev/null 2>&1 || bad "package $p is not in Debian (apt-cache show; run apt-get update?)"
            done
        fi
        ;;
    COPY | ADD)
        [[ ${op^^} == ADD ]] && bad "ADD: use COPY"
        args=()
        for a in $rest; do [[ $a == --* ]] || args+=("$a"); done
        if [[ $rest == *--from=* ]]; then
            continue
        fi
        unset 'args[${#args[@]}-1]'
        for src in "${args[@]}"; do
            [[ -e $root/$src ]] || bad "COPY source $src does not exist in the build context"
            top=${src%%/*}
            if grep -qxF -e "$top" -e "${top}*" "$here/Dockerfile.dockerignore" ||
                { [[ $top == build* ]] && grep -qx 'build\*' "$here/Dockerfile.dockerignore"; }; then
                bad "COPY source $src is excluded by Dockerfile.dockerignore"
            fi
        done
        ;;
    USER) final_user=$rest ;;
    EXPOSE) final_expose=$rest ;;
    HEALTHCHECK) final_health=$rest ;;
    ENTRYPOINT) final_entry=$rest ;;
    esac
done
[[ $stages -ge 2 ]] || bad "not multi-stage"
[[ $build_deps -eq 1 ]] || bad "the build stage does not run scripts/deps.sh"
[[ $build_cmake -eq 1 ]] || bad "the build stage does not run the CMake build"
[[ $final_user =~ ^[1-9][0-9]*(:[1-9][0-9]*)?$ ]] || bad "final stage USER '$final_user' is not a numeric non-root user"
for p in 143 993 8080; do
    [[ " $final_expose " == *" $p "* ]] || bad "EXPOSE lacks $p"
done
[[ $final_health == *cimap-healthcheck* ]] || bad "no HEALTHCHECK running cimap-healthcheck"
[[ $final_entry == *cimapd* ]] || bad "ENTRYPOINT is not cimapd"
grep -q 'CIMAP_HTTP=0.0.0.0:8080' "$df" || bad "CIMAP_HTTP is not set to the exposed port 8080"

# The runtime packages must provide every library the binaries load.
if [[ -x $build/cimapd && -x $build/cimap-admin ]]; then
    for lib in $(ldd "$build/cimapd" "$build/cimap-admin" | awk '/=>/ { print $3 }' | sort -u); do
        pkg=$(dpkg -S "$(readlink -f "$lib")" 2>/dev/null | head -1 | cut -d: -f1)
        [[ -n $pkg ]] || pkg=$(dpkg -S "$lib" 2>/dev/null | head -1 | cut -d: -f1)
        [[ $pkg == libc6 ]] && continue
        [[ " ${runtime_pkgs[*]} " == *" $pkg "* ]] || bad "$(basename "$lib") comes from $pkg, which the runtime stage does not install"
    done
else
    echo "docker check: no $build/cimapd yet; the ldd check is skipped" >&2
fi

for s in "$here"/*.sh; do
    bash -n "$s" || bad "$s: syntax"
done
if command -v shellcheck >/dev/null; then
    shellcheck -S warning "$here"/*.sh || bad "shellcheck"
fi

# The healthcheck script against a stand-in server: 200 passes, 503 and a closed port fail.
if command -v python3 >/dev/null; then
    hc_try() { # STATUS -> exit code of healthcheck.sh
        python3 - "$1" "$here/healthcheck.sh" <<'PY'
import http.server, os, socket, subprocess, sys, threading
code = int(sys.argv[1])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(code if self.path == "/healthz" else 404)
        self.end_headers()
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
port = srv.server_address[1]
if code == 0:
    srv.server_close()
else:
    threading.Thread(target=srv.serve_forever, daemon=True).start()
env = dict(os.environ, CIMAP_HTTP="0.0.0.0:%d" % port)
sys.exit(subprocess.call(["bash", sys.argv[2]], env=env, stderr=subprocess.DEVNULL))
PY
    }
    hc_try 200 || bad "healthcheck.sh fails against a healthy server"
    hc_try 503 && bad "healthcheck.sh passes a 503"
    hc_try 0 && bad "healthcheck.sh passes a closed port"
fi

if [[ $fails -gt 0 ]]; then
    echo "docker check: $fails problem(s)" >&2
    exit 1
fi
echo "docker check: Dockerfile ok (${#runtime_pkgs[@]} runtime packages: ${runtime_pkgs[*]})"
