#!/bin/bash
# gemnar-lb-apply: stdin is a JSON list of "ip:port" load-balancer members (the ready workers).
# Stores the list, renders the Nginx upstream with exactly those members, checks it with
# `nginx -t` and reloads Nginx. Exits non-zero, saying why, when Nginx does not take it (the
# health monitor keeps retrying the stored membership). Run by Pulumi over SSH whenever
# membership changes; idempotent.
set -euo pipefail
cd '@{project_dir}'
exec '@{python}' -m healthmon apply --settings '@{settings_file}'
