#!/bin/bash
# gemnar-apply-secrets: run by Pulumi over SSH right after it writes the controller's root-only
# secrets file. Applies them idempotently: the app role's SCRAM verifier in PostgreSQL and in
# PgBouncer's auth file (the plain password never reaches either), and Redis's requirepass,
# replacing the random one the first boot locked Redis with.
set -euo pipefail
umask 077
secrets_file='@{secrets_file}'
app_user='@{app_user}'
# shellcheck disable=SC1090
. "$secrets_file"
: "${GEMNAR_DB_PASSWORD:?missing from the secrets file}" "${GEMNAR_REDIS_PASSWORD:?missing}"

# The password goes through stdin, never the command line (other users can read that).
verifier="$(printf '%s' "$GEMNAR_DB_PASSWORD" | PYTHONPATH='@{project_dir}' '@{python}' -c \
    'import sys; from provisioning.scram import scram_sha256_verifier as v; print(v(sys.stdin.read()))')"

cd /
runuser -u postgres -- psql -h '@{pg_run_dir}' -p '@{pg_port}' -d postgres -v ON_ERROR_STOP=1 \
    -qAt -f - <<SQL
ALTER ROLE "$app_user" PASSWORD '$verifier';
SQL

auth_file='@{pgbouncer_auth_file}'
printf '"%s" "%s"\n' "$app_user" "$verifier" >"$auth_file.new"
chown postgres:postgres "$auth_file.new"
chmod 0600 "$auth_file.new"
mv -f "$auth_file.new" "$auth_file"

redis_secrets='@{redis_secrets}'
printf 'requirepass %s\n' "$GEMNAR_REDIS_PASSWORD" >"$redis_secrets.new"
chown redis:redis "$redis_secrets.new"
chmod 0600 "$redis_secrets.new"
mv -f "$redis_secrets.new" "$redis_secrets"

systemctl reload pgbouncer
systemctl restart redis-server
echo "gemnar-apply-secrets: applied"
