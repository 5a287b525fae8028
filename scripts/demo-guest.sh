#!/usr/bin/env bash
# Runs on a kernel with VDUSE (started by scripts/demo.sh).
set -euo pipefail
image="$VDUSE_CSI_SCRATCH/demo.img"
mnt="$VDUSE_CSI_SCRATCH/mnt"
step() { printf '\n== %s\n' "$*"; }

step "serving $image (256 MiB, 2 queues) with vduse-csi blk serve"
announced="$VDUSE_CSI_SCRATCH/server.out"
node dist/bundle/vduse-csi.js blk serve --file "$image" --size 256M --name demo --queues 2 \
  >"$announced" 2>"$VDUSE_CSI_SCRATCH/server.log" &
server=$!
until grep -q '^{' "$announced"; do
  kill -0 "$server" 2>/dev/null || { cat "$VDUSE_CSI_SCRATCH/server.log"; exit 1; }
  sleep 0.2
done
device=$(head -n 1 "$announced")
grep '^{' "$announced"
step "the kernel sees $device"
lsblk -o NAME,SIZE,RO,TYPE,LOG-SEC "$device"
echo "serial: $(cat "/sys/block/${device#/dev/}/serial")"

step "mkfs.ext4 and mount on $mnt"
mkfs.ext4 -q -F "$device"
mkdir -p "$mnt"
mount "$device" "$mnt"
findmnt "$mnt"

step "write 16 MiB, sync, remount, compare"
head -c 16M /dev/urandom >"$mnt/data.bin"
sum=$(sha256sum <"$mnt/data.bin")
sync
umount "$mnt"
mount "$device" "$mnt"
[ "$(sha256sum <"$mnt/data.bin")" = "$sum" ] && echo "data intact: ${sum%% *}"

step "online resize to 512 MiB"
node dist/bundle/vduse-csi.js blk resize --name demo --size 512M
for _ in $(seq 1 100); do [ "$(blockdev --getsize64 "$device")" = 536870912 ] && break; sleep 0.1; done
resize2fs "$device" 2>&1 | grep -i 'resiz'
df -h "$mnt" | tail -1

step "unmount and stop the server (it removes the device)"
umount "$mnt"
kill -TERM "$server"
wait "$server"
echo "left in /dev/vduse: $(ls /dev/vduse)"
echo "left on the vdpa bus: $(ls /sys/bus/vdpa/devices | wc -l) devices"
