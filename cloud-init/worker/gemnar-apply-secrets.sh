#!/bin/bash
# gemnar-apply-secrets: run by Pulumi over SSH right after it writes this worker's root-only
# secrets file; the app reads it through its unit's EnvironmentFile=, so restart it to pick the
# values up (readiness then waits for a healthy /health/).
set -euo pipefail
systemctl restart gemnar-app.service
echo "gemnar-apply-secrets: app restarted"
