#!/bin/bash
# Start the app under Uvicorn: one process per CPU unless configured, proxy headers trusted
# only from the controller, and a bounded graceful shutdown so drains end.
set -euo pipefail

processes='@{processes}'
if [ "$processes" = auto ]; then
    processes="$(nproc)"
fi

# The processes' shared metrics directory (the unit's RuntimeDirectory=, empty at start;
# made here when the script runs outside that unit).
export PROMETHEUS_MULTIPROC_DIR='@{metrics_dir}'
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"

exec '@{venv_dir}/bin/uvicorn' '@{asgi_app}' \
    --app-dir '@{app_dir}' \
    --host '@{host}' --port '@{port}' \
    --workers "$processes" \
    --proxy-headers --forwarded-allow-ips '@{controller_address}' \
    --timeout-graceful-shutdown '@{graceful_shutdown_s}' \
    --timeout-keep-alive '@{keep_alive_s}' \
    --no-server-header
