#!/bin/bash
# Container HEALTHCHECK: GET /healthz on cimapd's HTTP port (from CIMAP_HTTP, default 8080) with
# bash's /dev/tcp, so the image needs no HTTP client. Exit 0 when the answer is 200.
port=${CIMAP_HTTP:-0.0.0.0:8080}
port=${port##*:}
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
IFS= read -r -t 2 status <&3 || exit 1
[[ $status == HTTP/1.[01]\ 200* ]]
