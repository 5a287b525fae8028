#!/usr/bin/env bash
# Runs a shell command as root on a kernel that has VDUSE, with the project root as working directory.
#
#   test/vm/run.sh 'COMMAND ...'        (all arguments are joined with spaces into one command string)
#
# If the host kernel has VDUSE (/dev/vduse/control exists or `modprobe vduse` works) the command runs
# directly on the host; otherwise a VM is booted with virtme-ng (software emulation, KVM is unusable on
# these machines) on the kernel /boot/vmlinuz-$VDUSE_CSI_KERNEL.
#
# Before COMMAND: `modprobe vduse virtio_vdpa` (failing clearly), `ulimit -n` and `ulimit -l` raised,
# a tmpfs scratch directory mounted and exported as VDUSE_CSI_SCRATCH, and VDUSE_CSI_OUT set to a
# directory shared with the host (.vm-out/<timestamp>-<pid>/ by default) where the command may write.
# The guest also writes there: exit_code, dmesg.txt; the host writes console.log.
#
# Exits with COMMAND's exit status (read from the result file, never trusted from vng; no result file
# means failure: 124 if the VM timed out, else 1; 130 if this script was interrupted). On failure the output directory is kept and the paths of the console log and dmesg
# are printed with the last 80 lines of dmesg. On success the directory is deleted, unless it was
# given through VDUSE_CSI_VM_OUT or VDUSE_CSI_KEEP_OUT=1.
#
# Environment:
#   VDUSE_CSI_KERNEL        kernel version (default 6.12.107+deb13-amd64)
#   VDUSE_CSI_VM_MEMORY     guest memory (default 2G)
#   VDUSE_CSI_VM_CPUS       guest cpus (default 2)
#   VDUSE_CSI_VM_TIMEOUT    seconds for the whole VM run, boot included (default 1200)
#   VDUSE_CSI_VM_OUT        output directory to use (kept afterwards)
#   VDUSE_CSI_KEEP_OUT=1    keep the output directory even on success
#   VDUSE_CSI_FORCE_VM=1    boot a VM even if the host kernel has VDUSE
#   VDUSE_CSI_SCRATCH_SIZE  size= option of the scratch tmpfs (default: tmpfs default, half of RAM)
# Passed into the guest: CI, PATH, and every variable whose name starts with VDUSE_CSI_.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
GUEST_SCRIPT="$ROOT/test/vm/guest.sh"

if [ "$#" -eq 0 ]; then
  echo "usage: test/vm/run.sh 'COMMAND ...'" >&2
  exit 2
fi
CMD="$*"

KERNEL_VER=${VDUSE_CSI_KERNEL:-6.12.107+deb13-amd64}
MEMORY=${VDUSE_CSI_VM_MEMORY:-2G}
CPUS=${VDUSE_CSI_VM_CPUS:-2}
TIMEOUT=${VDUSE_CSI_VM_TIMEOUT:-1200}

keep_out=${VDUSE_CSI_KEEP_OUT:-0}
if [ -n "${VDUSE_CSI_VM_OUT:-}" ]; then
  OUT=$VDUSE_CSI_VM_OUT
  keep_out=1
else
  OUT="$ROOT/.vm-out/$(date +%Y%m%d-%H%M%S)-$$"
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT/exit_code" "$OUT/dmesg.txt" "$OUT/console.log"

log() { echo "[vm/run.sh] $*" >&2; }

# Writes export statements for the variables passed to the command.
write_env() {
  local name
  {
    printf 'export CI=%q\n' "${CI:-}"
    printf 'export PATH=%q\n' "${PATH}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    while IFS= read -r name; do
      case "$name" in
        VDUSE_CSI_OUT | VDUSE_CSI_SCRATCH) ;; # set by the guest script
        *) printf 'export %s=%q\n' "$name" "${!name}" ;;
      esac
    done < <(compgen -e | grep '^VDUSE_CSI_' || true)
    printf 'export VDUSE_CSI_OUT=%q\n' "$OUT"
  } >"$OUT/env.sh"
}

on_failure() {
  local rc=$1
  log "FAILED (exit $rc); output kept in $OUT"
  log "console log: $OUT/console.log"
  if [ -s "$OUT/dmesg.txt" ]; then
    log "dmesg:       $OUT/dmesg.txt (last 80 lines follow)"
    tail -n 80 "$OUT/dmesg.txt" >&2
  elif [ -s "$OUT/dmesg.live" ]; then
    log "dmesg:       $OUT/dmesg.live (copied every 10 s before the guest stopped; last 80 lines follow)"
    tail -n 80 "$OUT/dmesg.live" >&2
  else
    log "no dmesg was written (guest did not finish); last 80 lines of the console log follow"
    tail -n 80 "$OUT/console.log" >&2 || true
  fi
}

host_has_vduse() {
  [ "${VDUSE_CSI_FORCE_VM:-0}" = 1 ] && return 1
  [ -e /dev/vduse/control ] && return 0
  modprobe vduse >/dev/null 2>&1 && return 0
  return 1
}

printf '%s\n' "$CMD" >"$OUT/cmd.sh"
write_env

if host_has_vduse; then
  log "host kernel $(uname -r) has VDUSE: running on the host"
  set +e
  bash "$GUEST_SCRIPT" "$OUT" "$ROOT" 2>&1 | tee "$OUT/console.log"
  set -e
else
  kernel="/boot/vmlinuz-$KERNEL_VER"
  if [ ! -r "$kernel" ] || [ ! -d "/lib/modules/$KERNEL_VER" ]; then
    log "kernel $kernel or /lib/modules/$KERNEL_VER missing: run scripts/install-deps.sh"
    exit 1
  fi
  command -v vng >/dev/null || {
    log "vng (virtme-ng) not found: run scripts/install-deps.sh"
    exit 1
  }
  guest_cmd=$(printf 'bash %q %q %q' "$GUEST_SCRIPT" "$OUT" "$ROOT")
  log "booting $KERNEL_VER in a VM (tcg, ${MEMORY}, ${CPUS} cpus, timeout ${TIMEOUT}s); output dir $OUT"
  start=$(date +%s)
  # timeout(1) puts vng and qemu in a process group of their own (so that it can kill them all on
  # expiry); a signal to this script is therefore forwarded to it explicitly, or qemu would live on.
  fifo="$OUT/.console.fifo"
  rm -f "$fifo"
  mkfifo "$fifo"
  tee "$OUT/console.log" <"$fifo" &
  tee_pid=$!
  # The guest path of --rwdir is given explicitly (guest=host): vng 1.35 checks a relative guest
  # path against the host's cwd and rejects it.
  (cd "$ROOT" && exec timeout -k 30 "$TIMEOUT" vng --run "$kernel" --disable-kvm \
    --memory "$MEMORY" --cpus "$CPUS" --rwdir="$OUT=$OUT" -- "$guest_cmd") </dev/null >"$fifo" 2>&1 &
  vm_pid=$!
  interrupted=0
  trap 'interrupted=1; kill -TERM "$vm_pid" 2>/dev/null || true' INT TERM HUP
  vng_rc=0
  wait "$vm_pid" || vng_rc=$?
  while kill -0 "$vm_pid" 2>/dev/null; do # a trapped signal interrupted the wait
    vng_rc=0
    wait "$vm_pid" || vng_rc=$?
  done
  trap - INT TERM HUP
  wait "$tee_pid" || true
  rm -f "$fifo"
  if [ "$interrupted" = 1 ]; then
    log "interrupted: VM stopped; output kept in $OUT"
    exit 130
  fi
  log "VM finished after $(($(date +%s) - start))s (vng exit $vng_rc)"
  if [ "$vng_rc" = 124 ] || [ "$vng_rc" = 137 ]; then
    log "VM timed out after ${TIMEOUT}s"
    timed_out=1
  fi
fi

rc=1
[ "${timed_out:-0}" = 1 ] && rc=124
if [ -s "$OUT/exit_code" ]; then
  rc=$(tr -dc '0-9' <"$OUT/exit_code")
  rc=${rc:-1}
else
  log "no result file $OUT/exit_code: the command did not finish"
fi

if [ "$rc" != 0 ]; then
  on_failure "$rc"
elif [ "$keep_out" != 1 ]; then
  rm -rf "$OUT"
fi
exit "$rc"
