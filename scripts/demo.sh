#!/usr/bin/env bash
# README command 1: install what is missing, build, start a private redis-server (loopback, its own
# port, no persistence) and cimapd on 127.0.0.1:1143 with the demo user demouser / demopass, in
# the foreground. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target cimapd cimap-admin >/dev/null

port=${CIMAP_DEMO_REDIS_PORT:-16379}
data=$(mktemp -d /tmp/cimap-demo-redis.XXXXXX)
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$data" \
    --maxmemory-policy noeviction --daemonize no --loglevel warning &
redis_pid=$!
cleanup() {
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
    rm -rf "$data"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for _ in $(seq 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.05
done

echo "cimap demo: IMAP on 127.0.0.1:1143, user demouser, password demopass (Ctrl-C stops)" >&2
build/cimapd --redis "redis://127.0.0.1:$port" --listen 127.0.0.1:1143 --demo-data "$@" &
cimapd_pid=$!
trap 'kill -TERM "$cimapd_pid" 2>/dev/null; wait "$cimapd_pid" 2>/dev/null; exit 130' INT TERM
wait "$cimapd_pid"
