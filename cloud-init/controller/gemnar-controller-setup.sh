#!/bin/bash
# First-boot setup of the gemnar controller, run by cloud-init after packages and files are in
# place. Idempotent: a re-run (or a new instance on the same volume) changes nothing it needs.
# Secrets are not here: they arrive later over SSH into root-only files. PostgreSQL's data
# lives on the block-storage volume, which Vultr attaches after the instance exists; it is
# prepared by gemnar-data-volume (run over SSH once attached), never on the root disk here.
set -euo pipefail

mount_point='@{block_storage_mount}'
redis_secrets='@{redis_secrets}'
tls_cert='@{tls_cert}'
tls_key='@{tls_key}'
server_name='@{server_name}'

# This node's VPC address into every config that binds it, before anything starts.
'@{vpc_address_script}' @{address_files}

# The host firewall before any data service listens on the VPC address.
'@{firewall_up_script}'

# Debian's packaged cluster in /var/lib never ran here (held back above), but an image made
# without that guard may run it; ours is configured by the files cloud-init has written and
# lives on the volume. Without the volume mounted it stays down.
systemctl stop postgresql
# That stop fails for the packaged cluster (pg_ctlcluster reads the written config, whose data
# directory is on the volume) and systemd ends its processes anyway; forget the failure, or
# postgresql@15-main stays listed as failed until PostgreSQL is restarted on the volume.
systemctl reset-failed 'postgresql@*'
if mountpoint -q "$mount_point"; then
    '@{postgres_setup}'
fi

# Redis refuses to start without its include; with no user enabled it is locked until the
# real users arrive over SSH.
if [ ! -f "$redis_secrets" ]; then
    umask 077
    printf 'user default off\n' >"$redis_secrets"
    chown redis:redis "$redis_secrets"
    chmod 0600 "$redis_secrets"
    umask 022
fi

# Nginx needs a certificate before certbot can have issued one.
if [ ! -f "$tls_cert" ]; then
    install -d -m 0755 "$(dirname "$tls_cert")"
    install -d -m 0700 "$(dirname "$tls_key")"
    openssl req -x509 -nodes -newkey rsa:2048 -days 30 -subj "/CN=$server_name" \
        -keyout "$tls_key" -out "$tls_cert"
    chmod 0600 "$tls_key"
fi

install -d -o gemnar -g gemnar -m 0755 '@{static_root}'
install -d -m 0755 '@{acme_webroot}' "$(dirname '@{upstream_file}')"
install -d -m 0700 '@{secrets_dir}' '@{backup_dir}' '@{state_dir}'
touch '@{pgbouncer_auth_file}'
chown postgres:postgres '@{pgbouncer_auth_file}'
chmod 0600 '@{pgbouncer_auth_file}'

systemctl daemon-reload
# The sshd drop-in applies to new connections: reload (SIGHUP re-executes the listener) and
# leave the sessions open right now alone -- the deployer's first-boot wait is one of them.
systemctl reload-or-restart ssh
systemctl restart redis-server pgbouncer
# Nginx resolves the media bucket's host through it (Debian's config: loopback only).
systemctl start unbound
systemctl enable prometheus-node-exporter
systemctl restart prometheus-node-exporter
nginx -t && systemctl restart nginx
# Monitoring: the packages started with Debian's defaults (every address); restart them on
# the configs written above (loopback only), after Nginx serves its status page. Workers'
# targets: written by gemnar-lb-apply.
install -d -m 0755 '@{targets_dir}'
# The scaler (a DynamicUser= in group prometheus) writes its metrics beside the others.
install -d -o root -g prometheus -m 0775 '@{textfile_dir}'
systemctl enable @{monitoring_units}
systemctl restart @{monitoring_units}
systemctl enable --now @{timers}
