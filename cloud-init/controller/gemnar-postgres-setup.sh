#!/bin/bash
# gemnar-postgres-setup: initialise PostgreSQL's cluster on the mounted volume (once), start it
# and create the app role and database. Run by gemnar-data-volume's caller and by the first
# boot when the volume is already mounted. Idempotent.
set -euo pipefail
mount_point='@{mount_point}'
data_dir='@{data_dir}'
pg_bin='@{pg_bin}'
pg_run_dir='@{pg_run_dir}'
pg_port='@{pg_port}'
db_name='@{database}'
db_user='@{app_user}'

if ! mountpoint -q "$mount_point"; then
    echo "gemnar-postgres-setup: $mount_point is not mounted; run gemnar-data-volume first" >&2
    exit 1
fi
if [ ! -f "$data_dir/PG_VERSION" ]; then
    install -d -o postgres -g postgres -m 0700 "$data_dir"
    runuser -u postgres -- "$pg_bin/initdb" -D "$data_dir" --auth-local=peer \
        --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8
fi
chown -R postgres:postgres '@{pg_conf_dir}'
systemctl daemon-reload
systemctl enable postgresql
systemctl restart postgresql
deadline=$((SECONDS + 60))
until runuser -u postgres -- "$pg_bin/pg_isready" -q -h "$pg_run_dir" -p "$pg_port"; do
    if ((SECONDS >= deadline)); then
        echo "gemnar-postgres-setup: PostgreSQL not ready after 60s" >&2
        exit 1
    fi
    sleep 1
done
cd /
psql_admin() {
    runuser -u postgres -- psql -h "$pg_run_dir" -p "$pg_port" -d postgres \
        -v ON_ERROR_STOP=1 -qtA "$@"
}
if [ "$(psql_admin -c "select 1 from pg_roles where rolname = '$db_user'")" != 1 ]; then
    # Created without a password: gemnar-apply-secrets sets it.
    psql_admin -c "create role \"$db_user\" login"
fi
if [ "$(psql_admin -c "select 1 from pg_roles where rolname = '@{monitor_user}'")" != 1 ]; then
    # Prometheus's exporter: statistics only (pg_monitor), peer login as the OS user prometheus.
    psql_admin -c 'create role "@{monitor_user}" login in role pg_monitor'
fi
if [ "$(psql_admin -c "select 1 from pg_database where datname = '$db_name'")" != 1 ]; then
    psql_admin -c "create database \"$db_name\" owner \"$db_user\""
fi
echo "gemnar-postgres-setup: PostgreSQL ready on the volume"
