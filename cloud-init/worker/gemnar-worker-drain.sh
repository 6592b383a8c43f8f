#!/bin/bash
# gemnar-worker-drain <ip>: run by Pulumi over SSH before a worker is deleted or updated.
# Sets the drain flag, which fails this worker's /health/ at once, so the controller's health
# monitor takes it out of Nginx (new requests go elsewhere). Then waits until no request or
# WebSocket is open on the app port, at most @{timeout_s}s, and never less than
# @{out_of_rotation_s}s (the monitor's detection time) so that an idle moment before the worker
# has left the rotation is not taken for "drained".
# Exit 0: drained, or the bound passed (the remaining connections are named and cut).
# Exit 1: the connections could not be counted; nothing is claimed (fails closed).
set -uo pipefail
address="${1:?usage: gemnar-worker-drain <private-ip>}"
mkdir -p "$(dirname '@{drain_flag_file}')"
touch '@{drain_flag_file}'
start=$SECONDS
deadline=$((SECONDS + @{timeout_s}))
count_connections() {
    local out
    out="$(ss -Htn state established "( sport = :@{app_port} )" src "${address}")" || return 1
    if [[ -z $out ]]; then echo 0; else printf '%s\n' "$out" | wc -l; fi
}
while true; do
    if ! open="$(count_connections)"; then
        echo "gemnar-worker-drain: cannot count connections on ${address}:@{app_port} (ss failed);" \
            "not drained" >&2
        exit 1
    fi
    if ((open == 0 && SECONDS - start >= @{out_of_rotation_s})); then
        break
    fi
    if ((SECONDS >= deadline)); then
        echo "gemnar-worker-drain: ${address} still has ${open} connections after" \
            "@{timeout_s}s; they will be cut" >&2
        exit 0
    fi
    sleep 0.2  # poll interval of the connection count, bounded by the deadline above
done
echo "gemnar-worker-drain: ${address} drained"
