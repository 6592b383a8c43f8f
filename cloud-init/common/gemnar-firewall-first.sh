#!/bin/sh
# cloud-init bootcmd, every boot, before any ordinary service starts. Until the setup script
# has loaded nftables and made the flag, each unit named in "$@" is skipped at start.
set -eu
flag='@{flag}'
[ -e "$flag" ] && exit 0
for unit in "$@"; do
    mkdir -p "@{units_dir}/$unit.d"
    printf '[Unit]\nConditionPathExists=%s\n' "$flag" >"@{units_dir}/$unit.d/@{dropin}"
done
systemctl daemon-reload
