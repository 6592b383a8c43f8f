#!/bin/bash
# gemnar-apply-secrets: run by Pulumi over SSH right after it writes the controller's root-only
# secrets file. Applies them idempotently: the app role's password in PostgreSQL, which
# computes the SCRAM verifier itself; the same verifier in PgBouncer's auth file (the plain
# password never reaches PgBouncer), beside the admin console's verifier (restore --swap pauses
# the app there, with the password from backup.env); Redis's requirepass, replacing the random
# one the first boot locked Redis with, the Redis exporter's password in its root-only
# environment file, and Alertmanager's webhook URL (it may carry a token) in its config. Needs nothing but what the node's packages installed.
set -euo pipefail
umask 077
secrets_file='@{secrets_file}'
app_user='@{app_user}'
admin_user='@{admin_user}'
# shellcheck disable=SC1090
. "$secrets_file"
: "${GEMNAR_DB_PASSWORD:?missing from the secrets file}" "${GEMNAR_REDIS_PASSWORD:?missing}"
: "${GEMNAR_REDIS_EXPORTER_PASSWORD:?missing from the secrets file}"
: "${GEMNAR_PGBOUNCER_ADMIN_VERIFIER:?missing from the secrets file}"
webhook="${GEMNAR_ALERT_WEBHOOK_URL-}"
# The stack key's own pattern (stack_schema): nothing YAML or the shell would read as syntax.
case "$webhook" in
    '' | http://* | https://*) ;;
    *) echo "gemnar-apply-secrets: the alert webhook is not an http(s) URL" >&2; exit 1 ;;
esac
case "$webhook" in
    *[!A-Za-z0-9._~:/%@+=,-]*) echo "gemnar-apply-secrets: bad alert webhook URL" >&2; exit 1 ;;
esac
case "$GEMNAR_DB_PASSWORD$GEMNAR_REDIS_PASSWORD$GEMNAR_REDIS_EXPORTER_PASSWORD" in
    *[!A-Za-z0-9_-]*) echo "gemnar-apply-secrets: passwords must be [A-Za-z0-9_-]" >&2; exit 1 ;;
esac
# A SCRAM verifier: the scheme name, then $<iterations>:<salt>$<StoredKey>:<ServerKey> with
# base64 fields, so nothing to quote. (User data must not show a verifier's shape.)
case "$GEMNAR_PGBOUNCER_ADMIN_VERIFIER" in
    SCRAM-SHA-256\$*:*\$*:*) ;;
    *) echo "gemnar-apply-secrets: the admin verifier is not a SCRAM verifier" >&2; exit 1 ;;
esac
case "${GEMNAR_PGBOUNCER_ADMIN_VERIFIER#SCRAM-SHA-256}" in
    *[!A-Za-z0-9+/=:$]*) echo "gemnar-apply-secrets: bad admin verifier" >&2; exit 1 ;;
esac

cd /
# The password travels on stdin, never a command line; this session logs no statement.
verifier="$(runuser -u postgres -- psql -h '@{pg_run_dir}' -p '@{pg_port}' -d postgres \
    -v ON_ERROR_STOP=1 -qAt -f - <<SQL
SET log_statement = 'none';
SET log_min_duration_statement = -1;
SET log_min_error_statement = 'panic';
SET password_encryption = 'scram-sha-256';
ALTER ROLE "$app_user" PASSWORD '$GEMNAR_DB_PASSWORD';
SELECT rolpassword FROM pg_authid WHERE rolname = '$app_user';
SQL
)"
case "$verifier" in
    SCRAM-SHA-256\$*) ;;
    *) echo "gemnar-apply-secrets: PostgreSQL returned no SCRAM verifier" >&2; exit 1 ;;
esac

auth_file='@{pgbouncer_auth_file}'
# The metrics collector's stats user logs in by peer only (its hba line): no password.
printf '"%s" "%s"\n' "$app_user" "$verifier" "$admin_user" "$GEMNAR_PGBOUNCER_ADMIN_VERIFIER" \
    '@{pgbouncer_stats_user}' '' >"$auth_file.new"
chown postgres:postgres "$auth_file.new"
chmod 0600 "$auth_file.new"
mv -f "$auth_file.new" "$auth_file"

redis_secrets='@{redis_secrets}'
# ACL users (provisioning.redis): the default user off, the app's and the exporter's users
# with their passwords' SHA-256 and their command and key rules.
redis_hash="$(printf '%s' "$GEMNAR_REDIS_PASSWORD" | sha256sum | cut -d' ' -f1)"
exporter_hash="$(printf '%s' "$GEMNAR_REDIS_EXPORTER_PASSWORD" | sha256sum | cut -d' ' -f1)"
printf 'user default off\nuser @{redis_app_user} on #%s @{redis_app_rules}\nuser @{redis_exporter_user} on #%s @{redis_exporter_rules}\n' \
    "$redis_hash" "$exporter_hash" >"$redis_secrets.new"
chown redis:redis "$redis_secrets.new"
chmod 0600 "$redis_secrets.new"
# Redis reads its users only when it starts, and a restart drops every client: restart it
# only when its password changed (the hook also runs when only other secrets did).
redis_changed=1
if cmp -s "$redis_secrets.new" "$redis_secrets"; then redis_changed=0; fi
mv -f "$redis_secrets.new" "$redis_secrets"

# The exporter's unit reads this (EnvironmentFile=, as root) before it drops privileges.
exporter_env='@{redis_exporter_env}'
printf 'REDIS_PASSWORD=%s\n' "$GEMNAR_REDIS_EXPORTER_PASSWORD" >"$exporter_env.new"
chmod 0600 "$exporter_env.new"
exporter_changed=1
if cmp -s "$exporter_env.new" "$exporter_env"; then exporter_changed=0; fi
mv -f "$exporter_env.new" "$exporter_env"

# Alertmanager 0.25 reads a webhook's URL only from its config (no url_file): cloud-init wrote
# it without one; set (or drop) the receiver's webhook here, readable by prometheus only.
alertmanager_conf='@{alertmanager_conf}'
GEMNAR_ALERT_WEBHOOK_URL="$webhook" python3 - "$alertmanager_conf" >"$alertmanager_conf.new" <<'PY'
import os, sys, yaml
with open(sys.argv[1]) as f:
    head = "".join(line for line in f if line.startswith("#"))
    f.seek(0)
    config = yaml.safe_load(f)
url = os.environ["GEMNAR_ALERT_WEBHOOK_URL"]
for receiver in config["receivers"]:
    receiver.pop("webhook_configs", None)
    if url and receiver["name"] == "@{receiver}":
        receiver["webhook_configs"] = [{"url": url, "send_resolved": True}]
sys.stdout.write(head + yaml.safe_dump(config, sort_keys=False, width=4096))
PY
chown root:prometheus "$alertmanager_conf.new"
chmod 0640 "$alertmanager_conf.new"
alertmanager_changed=1
if cmp -s "$alertmanager_conf.new" "$alertmanager_conf"; then alertmanager_changed=0; fi
mv -f "$alertmanager_conf.new" "$alertmanager_conf"

systemctl reload pgbouncer
if ((redis_changed)); then systemctl restart redis-server; fi
if ((exporter_changed)); then systemctl restart prometheus-redis-exporter; fi
if ((alertmanager_changed)); then systemctl reload prometheus-alertmanager; fi
echo "gemnar-apply-secrets: applied"
