#!/usr/bin/env bash
# Stops what deploy/local/up.sh started: the front ends first (SIGTERM: they drain), then HAProxy
# and Redis; anything still running after its grace gets SIGKILL. Then removes the state
# directory, unless --keep (logs stay for a look).
#
#   deploy/local/down.sh [STATE_DIR] [--keep]        (default /tmp/cimap-local)
set -uo pipefail
state=/tmp/cimap-local
keep=0
for a in "$@"; do
    case $a in
    --keep) keep=1 ;;
    *) state=$a ;;
    esac
done
if [[ ! -f $state/env && ! -f $state/redis.conf ]]; then
    echo "down.sh: nothing started in $state" >&2
    exit 0
fi

stop() { # PIDFILE GRACE_SECONDS
    local pid
    [[ -f $1 ]] || return 0
    pid=$(cat "$1")
    # Only a process still running the command up.sh started.
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq $(($2 * 20))); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "down.sh: $(basename "$1" .pid) still running after ${2}s: SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null
        fi
    fi
    rm -f "$1"
}

for f in "$state"/cimapd-*.pid; do
    [[ -e $f ]] && stop "$f" 40 &
done
wait
stop "$state/haproxy.pid" 5
stop "$state/redis.pid" 10
if [[ $keep -eq 1 ]]; then
    rm -f "$state/env"
    echo "down.sh: stopped; logs kept in $state" >&2
else
    rm -rf "$state"
    echo "down.sh: stopped and removed $state" >&2
fi
