#!/bin/bash
# First-boot setup of the gemnar controller, run by cloud-init after packages and files are in
# place. Idempotent: a re-run (or a new instance on the same volume) changes nothing it needs.
# Secrets are not here: they arrive later over SSH into root-only files.
set -euo pipefail

block_device='@{block_device}'
mount_point='@{block_storage_mount}'
data_dir='@{data_dir}'
pg_bin='@{pg_bin}'
pg_conf_dir='@{pg_conf_dir}'
pg_run_dir='@{pg_run_dir}'
pg_port='@{pg_port}'
db_name='@{database}'
db_user='@{app_user}'
redis_secrets='@{redis_secrets}'
tls_cert='@{tls_cert}'
tls_key='@{tls_key}'
server_name='@{server_name}'

# The block-storage volume: formatted only when blank, so a re-attached volume keeps its data.
if [ -n "$block_device" ]; then
    for _ in $(seq 1 60); do
        [ -b "$block_device" ] && break
        sleep 2
    done
    if ! blkid "$block_device" >/dev/null 2>&1; then
        mkfs.ext4 -L pgdata "$block_device"
    fi
    mkdir -p "$mount_point"
    if ! grep -q " $mount_point " /etc/fstab; then
        echo "$block_device $mount_point ext4 defaults,nofail,noatime 0 2" >>/etc/fstab
    fi
    mountpoint -q "$mount_point" || mount "$mount_point"
fi

# PostgreSQL: Debian's package created a cluster in /var/lib; ours lives on the volume and is
# configured by the files in $pg_conf_dir, which cloud-init has already replaced.
systemctl stop postgresql
if [ ! -f "$data_dir/PG_VERSION" ]; then
    install -d -o postgres -g postgres -m 0700 "$data_dir"
    runuser -u postgres -- "$pg_bin/initdb" -D "$data_dir" --auth-local=peer \
        --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8
fi
chown -R postgres:postgres "$pg_conf_dir"
systemctl enable --now postgresql
for _ in $(seq 1 30); do
    runuser -u postgres -- "$pg_bin/pg_isready" -q -h "$pg_run_dir" -p "$pg_port" && break
    sleep 1
done
psql_admin() {
    runuser -u postgres -- psql -h "$pg_run_dir" -p "$pg_port" -v ON_ERROR_STOP=1 -qtA "$@"
}
if [ "$(psql_admin -c "select 1 from pg_roles where rolname = '$db_user'")" != 1 ]; then
    # Created without a password: the SCRAM verifier is set over SSH.
    psql_admin -c "create role \"$db_user\" login"
fi
if [ "$(psql_admin -c "select 1 from pg_database where datname = '$db_name'")" != 1 ]; then
    psql_admin -c "create database \"$db_name\" owner \"$db_user\""
fi

# Redis refuses to start without its include; a random password locks it until the real one
# arrives over SSH.
if [ ! -f "$redis_secrets" ]; then
    umask 077
    printf 'requirepass %s\n' "$(openssl rand -hex 32)" >"$redis_secrets"
    chown redis:redis "$redis_secrets"
    chmod 0600 "$redis_secrets"
fi

# Nginx needs a certificate before certbot can have issued one.
if [ ! -f "$tls_cert" ]; then
    install -d -m 0755 "$(dirname "$tls_cert")"
    install -d -m 0700 "$(dirname "$tls_key")"
    openssl req -x509 -nodes -newkey rsa:2048 -days 30 -subj "/CN=$server_name" \
        -keyout "$tls_key" -out "$tls_cert"
    chmod 0600 "$tls_key"
fi

install -d -o gemnar -g gemnar -m 0755 '@{media_root}' '@{static_root}'
install -d -m 0755 '@{acme_webroot}' "$(dirname '@{upstream_file}')"
install -d -m 0700 '@{secrets_dir}' '@{backup_dir}' '@{state_dir}'

systemctl daemon-reload
systemctl restart redis-server pgbouncer
systemctl enable --now nftables nfs-server prometheus-node-exporter
exportfs -ra
nginx -t && systemctl restart nginx
systemctl enable --now @{timers}
