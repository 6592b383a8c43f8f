#!/bin/bash
# Nightly logical backup of the gemnar database with retention. The off-site copy reads its
# credentials from a root-only file delivered over SSH; without it the dump stays local.
set -euo pipefail

backup_dir='@{backup_dir}'
retention_days='@{retention_days}'
pg_run_dir='@{pg_run_dir}'
pg_port='@{pg_port}'
db_name='@{database}'
offsite_hook='@{offsite_hook}'

umask 077
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
target="$backup_dir/$db_name-$stamp.dump"
runuser -u postgres -- pg_dump -h "$pg_run_dir" -p "$pg_port" -Fc "$db_name" >"$target.partial"
mv "$target.partial" "$target"
find "$backup_dir" -name "$db_name-*.dump" -type f -mtime "+$retention_days" -delete
if [ -x "$offsite_hook" ]; then
    "$offsite_hook" "$target"
fi
