#!/bin/bash
# gemnar-worker-ready <ip>: wait until this worker has finished first boot and its app answers
# /health/ with 200, so it can join the load balancer. Run by Pulumi over SSH after create.
set -euo pipefail
address="${1:?usage: gemnar-worker-ready <private-ip>}"
deadline=$((SECONDS + @{timeout_s}))
local_node='@{local}'
if [ "$local_node" != True ] && command -v cloud-init >/dev/null; then
    cloud-init status --wait >/dev/null || true
fi
rm -f '@{drain_flag_file}'
until curl -fsS -o /dev/null --max-time 3 \
        "http://${address}:@{app_port}/health/"; do
    if ((SECONDS >= deadline)); then
        echo "gemnar-worker-ready: ${address} not healthy after @{timeout_s}s" >&2
        exit 1
    fi
    sleep 1
done
echo "gemnar-worker-ready: ${address} healthy"
