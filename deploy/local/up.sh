#!/usr/bin/env bash
# The Kubernetes topology on one machine, on loopback: Redis (AOF, noeviction) + 3 cimapd front
# ends + HAProxy in TCP mode in front of them (PROXY protocol v2 to the front ends, health checks
# on /readyz, least-connections balancing), like the LoadBalancer Service and the Deployment of
# deploy/k8s. Starts everything in the background and returns; deploy/local/down.sh stops it.
#
#   deploy/local/up.sh [STATE_DIR]        (default /tmp/cimap-local; logs, pids, configs there)
#
# Ports (CIMAP_LOCAL_PORT_BASE, default 21100): base+0 IMAP on the balancer, base+1 IMAPS on the
# balancer (when openssl can make a throw-away certificate), base+2 HAProxy stats page, base+3
# Redis, base+10+i IMAP, base+20+i HTTP (/healthz /readyz /metrics) and base+30+i IMAPS of front
# end i (1..CIMAP_LOCAL_FRONTENDS, default 3). Binaries: $CIMAPD and $CIMAP_ADMIN, default
# build/cimapd and build/cimap-admin (built when missing). Extra cimapd flags:
# CIMAP_LOCAL_CIMAPD_ARGS. Every front end creates the demo user demouser / demopass.
#
# $STATE_DIR/env records the ports, pids and which cimapd features were on, for scripts and tests.
# cimapd flags that this build lacks (--http, --proxy-protocol, --drain-grace) are left out with
# a note, and HAProxy then checks plain TCP and sends no PROXY header.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
state=${1:-/tmp/cimap-local}
base=${CIMAP_LOCAL_PORT_BASE:-21100}
n=${CIMAP_LOCAL_FRONTENDS:-3}
cimapd=${CIMAPD:-$root/build/cimapd}
admin=${CIMAP_ADMIN:-$root/build/cimap-admin}
# shellcheck disable=SC2206
extra=(${CIMAP_LOCAL_CIMAPD_ARGS:-})

for tool in redis-server redis-cli haproxy; do
    command -v "$tool" >/dev/null || { echo "up.sh: $tool not found (scripts/deps.sh --test installs it)" >&2; exit 1; }
done
if [[ ! -x $cimapd || ! -x $admin ]]; then
    echo "up.sh: building cimapd and cimap-admin in $root/build" >&2
    cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$root/build" -j"$(nproc)" --target cimapd cimap-admin >/dev/null
fi
if [[ -f $state/env ]]; then
    echo "up.sh: $state/env exists: already running? (deploy/local/down.sh $state)" >&2
    exit 1
fi
mkdir -p "$state/redis"
state=$(cd "$state" && pwd)

help=$("$cimapd" --help 2>&1 || true)
has() { grep -q -- "$1" <<<"$help"; }
http=0 proxy=0 drain=0
has '--http ' && http=1
has '--proxy-protocol' && proxy=1
has '--drain-grace' && drain=1
[[ $http -eq 1 ]] || echo "up.sh: this cimapd has no --http: no /readyz, HAProxy checks plain TCP" >&2
[[ $proxy -eq 1 ]] || echo "up.sh: this cimapd has no --proxy-protocol: HAProxy sends no PROXY header" >&2

port() { echo $((base + $1)); }
lb=$(port 0) lb_tls=$(port 1) stats=$(port 2) redis_port=$(port 3)

cleanup_on_error() {
    echo "up.sh: start failed; stopping what started (logs in $state)" >&2
    "$root/deploy/local/down.sh" "$state" --keep >/dev/null 2>&1 || true
}
trap cleanup_on_error ERR

wait_tcp() { # PORT WHAT PIDFILE
    for _ in $(seq 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        if [[ -n ${3:-} ]] && ! kill -0 "$(cat "$3")" 2>/dev/null; then
            echo "up.sh: $2 exited" >&2
            return 1
        fi
        sleep 0.05
    done
    echo "up.sh: $2 did not open port $1" >&2
    return 1
}

{
    echo "STATE=$state"
    echo "LB_PORT=$lb"
    echo "STATS_PORT=$stats"
    echo "REDIS_PORT=$redis_port"
    echo "REDIS_URL=redis://127.0.0.1:$redis_port"
    echo "FRONTENDS=$n"
    echo "HAS_HTTP=$http"
    echo "HAS_PROXY=$proxy"
    echo "HAS_DRAIN=$drain"
} >"$state/env"

# ---- Redis: configured as a database (DESIGN.md rule 9), like deploy/k8s/redis/redis.conf.
cat >"$state/redis.conf" <<EOF
bind 127.0.0.1
port $redis_port
dir $state/redis
daemonize yes
pidfile $state/redis.pid
logfile $state/redis.log
appendonly yes
appendfsync everysec
save ""
maxmemory-policy noeviction
EOF
redis-server "$state/redis.conf"
for _ in $(seq 200); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.05
done
redis-cli -p "$redis_port" ping >/dev/null

# ---- TLS material for IMAPS, a throw-away self-signed certificate.
tls=0
if command -v openssl >/dev/null &&
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
        -keyout "$state/tls.key" -out "$state/tls.crt" >/dev/null 2>&1; then
    tls=1
    echo "LB_TLS_PORT=$lb_tls" >>"$state/env"
fi

# ---- cimapd front ends
servers="" tls_servers=""
for i in $(seq "$n"); do
    imap=$(port $((10 + i))) hport=$(port $((20 + i))) tport=$(port $((30 + i)))
    args=(--redis "redis://127.0.0.1:$redis_port" --listen "127.0.0.1:$imap" --demo-data)
    [[ $http -eq 1 ]] && args+=(--http "127.0.0.1:$hport")
    [[ $proxy -eq 1 ]] && args+=(--proxy-protocol --proxy-trusted 127.0.0.1/32)
    [[ $tls -eq 1 ]] && args+=(--listen-tls "127.0.0.1:$tport" --tls-cert "$state/tls.crt" --tls-key "$state/tls.key")
    args+=("${extra[@]}")
    printf '%q ' "$cimapd" "${args[@]}" >"$state/cimapd-$i.cmd"
    nohup "$cimapd" "${args[@]}" >>"$state/cimapd-$i.log" 2>&1 </dev/null &
    echo $! >"$state/cimapd-$i.pid"
    {
        echo "FRONT_${i}_IMAP=$imap"
        echo "FRONT_${i}_HTTP=$hport"
        [[ $tls -eq 1 ]] && echo "FRONT_${i}_IMAPS=$tport"
        echo "FRONT_${i}_PID=$(cat "$state/cimapd-$i.pid")"
    } >>"$state/env"
    opts="check inter 1s fall 2 rise 1"
    [[ $http -eq 1 ]] && opts+=" port $hport"
    [[ $proxy -eq 1 ]] && opts+=" send-proxy-v2"
    servers+="    server cimapd-$i 127.0.0.1:$imap $opts"$'\n'
    tls_servers+="    server cimapd-$i 127.0.0.1:$tport $opts"$'\n'
done
for i in $(seq "$n"); do
    wait_tcp "$(port $((10 + i)))" "cimapd-$i" "$state/cimapd-$i.pid"
done

# ---- HAProxy: the LoadBalancer Service (two descriptors per proxied connection)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
maxconn=$((($(ulimit -n) - 200) / 2))
[[ $maxconn -gt 10000 ]] && maxconn=10000
check_cfg="    option tcp-check"
if [[ $http -eq 1 ]]; then
    check_cfg="    option httpchk
    http-check send meth GET uri /readyz
    http-check expect status 200"
fi
{
    cat <<EOF
# generated by deploy/local/up.sh
global
    maxconn $maxconn
    stats socket $state/haproxy.sock mode 600 level admin

defaults
    mode tcp
    log stdout format raw local0
    option tcplog
    timeout connect 2s
    # IMAP sessions idle for up to 30 minutes (autologout), IDLE clients re-IDLE within 29.
    timeout client 35m
    timeout server 35m
    # A front end that is draining refuses new connections: try another one.
    retries 3
    option redispatch 1

listen stats
    mode http
    bind 127.0.0.1:$stats
    stats enable
    stats uri /

frontend imap
    bind 127.0.0.1:$lb
    default_backend cimapd-imap

backend cimapd-imap
    # IMAP connections live long: count them, not requests.
    balance leastconn
$check_cfg
$servers
EOF
    if [[ $tls -eq 1 ]]; then
        cat <<EOF
frontend imaps
    bind 127.0.0.1:$lb_tls
    default_backend cimapd-imaps

backend cimapd-imaps
    # TLS passes through to cimapd; the PROXY header goes before the ClientHello.
    balance leastconn
$check_cfg
$tls_servers
EOF
    fi
} >"$state/haproxy.cfg"
haproxy -c -q -f "$state/haproxy.cfg"
nohup haproxy -db -f "$state/haproxy.cfg" >>"$state/haproxy.log" 2>&1 </dev/null &
echo $! >"$state/haproxy.pid"
echo "HAPROXY_PID=$(cat "$state/haproxy.pid")" >>"$state/env"
wait_tcp "$lb" haproxy "$state/haproxy.pid"
# Ready means what Kubernetes waits for: every /readyz 200 and HAProxy has every server UP.
http_get() { # PORT PATH -> the response on stdout
    exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
    printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$2" >&3
    timeout 5 cat <&3
    exec 3<&-
}
ready=0
for _ in $(seq 300); do
    ok=1
    if [[ $http -eq 1 ]]; then
        for i in $(seq "$n"); do
            http_get "$(port $((20 + i)))" /readyz 2>/dev/null | head -1 | grep -q ' 200' || ok=0
        done
    fi
    # The stats CSV: column 18 is the status of each server of backend cimapd-imap.
    up=$(http_get "$stats" '/;csv' 2>/dev/null | awk -F, '$1 == "cimapd-imap" && $2 ~ /^cimapd-/ && $18 == "UP"' | wc -l)
    [[ $up -eq $n ]] || ok=0
    if [[ $ok -eq 1 ]]; then
        ready=1
        break
    fi
    sleep 0.1
done
if [[ $ready -ne 1 ]]; then
    echo "up.sh: the front ends did not all become ready within 30 s" >&2
    false
fi
echo "UP=1" >>"$state/env"
trap - ERR

echo "cimap local topology in $state: IMAP on 127.0.0.1:$lb$([[ $tls -eq 1 ]] && echo ", IMAPS on 127.0.0.1:$lb_tls") (demouser / demopass)," \
    "HAProxy stats http://127.0.0.1:$stats/, Redis 127.0.0.1:$redis_port, $n front ends; stop: deploy/local/down.sh $state" >&2
