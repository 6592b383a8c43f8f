#!/bin/bash
# gemnar-data-volume <device>: make PostgreSQL's block-storage volume ready at @{mount_point}.
# Run by Pulumi over SSH once the volume is attached (Vultr: /dev/disk/by-id/virtio-<mount_id>;
# the lab: a loop device). Formats the device only when it carries no filesystem at all, so a
# re-attached volume keeps its data; mounts it by filesystem UUID through @{fstab}; refuses
# to mount over a data directory that already holds a cluster on the root disk.
set -euo pipefail
device="${1:?usage: gemnar-data-volume <block device>}"
mount_point='@{mount_point}'
fstab='@{fstab}'
data_dir='@{data_dir}'
deadline=$((SECONDS + @{timeout_s}))

# The deadline loop of gemnar-worker-ready too (`duplicates` pairs them): each script is
# installed alone on its own role's node; a shell library for six lines would be one more file.
until [ -b "$device" ]; do
    if ((SECONDS >= deadline)); then
        echo "gemnar-data-volume: $device did not appear within @{timeout_s}s" >&2
        exit 1
    fi
    sleep 1
done

fs_type="$(blkid -p -o value -s TYPE "$device" || true)"
if [ -z "$fs_type" ]; then
    # blkid -p probes the device itself: no signature of any kind means blank.
    if blkid -p "$device" >/dev/null 2>&1; then
        echo "gemnar-data-volume: $device has a signature but no filesystem; not formatting" >&2
        exit 1
    fi
    mkfs.ext4 -q -L pgdata "$device"
    fs_type=ext4
elif [ "$fs_type" != ext4 ]; then
    echo "gemnar-data-volume: $device holds $fs_type, expected ext4; not touching it" >&2
    exit 1
fi
uuid="$(blkid -p -o value -s UUID "$device")"

if ! mountpoint -q "$mount_point"; then
    if [ -e "$data_dir/PG_VERSION" ]; then
        echo "gemnar-data-volume: $data_dir already holds a cluster on the root disk;" \
            "mounting the volume would hide it. Move it by hand first." >&2
        exit 1
    fi
    mkdir -p "$mount_point"
    if ! grep -q "^UUID=$uuid " "$fstab"; then
        printf 'UUID=%s %s ext4 defaults,nofail,noatime 0 2\n' "$uuid" "$mount_point" >>"$fstab"
    fi
    mount --fstab "$fstab" "$mount_point"
fi
install -d -o postgres -g postgres -m 0700 "$data_dir"
echo "gemnar-data-volume: $device ($uuid) mounted at $mount_point"
