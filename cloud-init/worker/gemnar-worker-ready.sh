#!/bin/bash
# gemnar-worker-ready <ip> [timeout_s]: wait until this worker has finished first boot and its
# app answers /health/ with 200, so it can join the load balancer. Run by Pulumi over SSH after
# create, and by gemnar-worker-roll after an app update (with the roll's own bound).
# First boot is over when @{boot_finished_file} exists (cloud-init writes it at the end of
# its last stage; a local node writes its own).
set -euo pipefail
address="${1:?usage: gemnar-worker-ready <private-ip>}"
timeout_s="${2:-@{timeout_s}}"
deadline=$((SECONDS + timeout_s))
# Same loop as the controller's gemnar-data-volume (`duplicates` pairs them; see there).
until [ -e '@{boot_finished_file}' ]; do
    if ((SECONDS >= deadline)); then
        echo "gemnar-worker-ready: first boot not finished after ${timeout_s}s" >&2
        exit 1
    fi
    sleep 1
done
rm -f '@{drain_flag_file}'
until curl -fsS -o /dev/null --max-time 3 \
        "http://${address}:@{app_port}/health/"; do
    if ((SECONDS >= deadline)); then
        echo "gemnar-worker-ready: ${address} not healthy after ${timeout_s}s" >&2
        exit 1
    fi
    sleep 1
done
echo "gemnar-worker-ready: ${address} healthy"
