#!/bin/bash
# gemnar-worker-drain <ip>: run by Pulumi over SSH before a worker is deleted, after the
# membership update has taken it out of Nginx. Marks the worker draining, then waits until no
# request or WebSocket is open on the app port, at most @{timeout_s}s. Always exits 0, so a
# broken worker can still be deleted.
set -uo pipefail
address="${1:?usage: gemnar-worker-drain <private-ip>}"
mkdir -p "$(dirname '@{drain_flag_file}')"
touch '@{drain_flag_file}'
deadline=$((SECONDS + @{timeout_s}))
open_connections() {
    ss -Htn state established "( sport = :@{app_port} )" src "${address}" 2>/dev/null | wc -l
}
while (( $(open_connections) > 0 )); do
    if ((SECONDS >= deadline)); then
        echo "gemnar-worker-drain: ${address} still has $(open_connections) connections" \
            "after @{timeout_s}s; stopping anyway" >&2
        exit 0
    fi
    sleep 0.5
done
echo "gemnar-worker-drain: ${address} drained"
