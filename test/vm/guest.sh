#!/usr/bin/env bash
# Runs inside the VM (or on a host whose kernel has VDUSE), started by test/vm/run.sh:
#   guest.sh OUT_DIR PROJECT_ROOT
# Sets up the environment, runs OUT_DIR/cmd.sh, writes OUT_DIR/exit_code and OUT_DIR/dmesg.txt.
set -uo pipefail

OUT=$1
ROOT=$2
rc=1
scratch=""
dmesg_pid=""

# shellcheck disable=SC2317  # invoked through the EXIT trap
finish() {
  # Record the result before anything else can fail.
  echo "$rc" >"$OUT/exit_code.tmp" && mv -f "$OUT/exit_code.tmp" "$OUT/exit_code"
  [ -z "$dmesg_pid" ] || kill "$dmesg_pid" 2>/dev/null
  dmesg >"$OUT/dmesg.txt" 2>&1 || true
  rm -f "$OUT/dmesg.live"
  if [ -n "$scratch" ]; then
    umount "$scratch" 2>/dev/null && rmdir "$scratch" 2>/dev/null
  fi
  sync
  exit "$rc"
}
trap finish EXIT

# shellcheck source=/dev/null
. "$OUT/env.sh"

# A copy of the kernel log every 10 s, for a guest that hangs and is killed by the host's timeout.
(while sleep 10; do dmesg >"$OUT/dmesg.live" 2>/dev/null; done) &
dmesg_pid=$!
cd "$ROOT" || { echo "[guest] cannot cd to $ROOT" >&2; exit 1; }

if ! { modprobe vduse && modprobe virtio_vdpa; }; then
  echo "[guest] FATAL: 'modprobe vduse virtio_vdpa' failed on kernel $(uname -r)" >&2
  rc=97
  exit
fi
if [ ! -e /dev/vduse/control ]; then
  echo "[guest] FATAL: /dev/vduse/control missing after modprobe" >&2
  rc=97
  exit
fi

nr_open=$(cat /proc/sys/fs/nr_open 2>/dev/null || echo 65536)
ulimit -n "$nr_open" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
ulimit -l unlimited 2>/dev/null || true

scratch=$(mktemp -d /tmp/vduse-csi-scratch.XXXXXX)
mount -t tmpfs -o "size=${VDUSE_CSI_SCRATCH_SIZE:-50%},mode=1777" tmpfs "$scratch" || {
  echo "[guest] FATAL: cannot mount tmpfs on $scratch" >&2
  rc=98
  exit
}
export VDUSE_CSI_SCRATCH=$scratch
export VDUSE_CSI_OUT=$OUT

bash "$OUT/cmd.sh"
rc=$?
exit
