#!/usr/bin/env bash
# Self-test of the VM rig (two boots, ~1.5 min in TCG): exit status propagation, VDUSE present,
# environment passed through, scratch tmpfs and output directory writable.
# shellcheck disable=SC2016  # the single-quoted commands expand inside the guest
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
mkdir -p .vm-out

pass=0
fail=0
check() {
  local what=$1 want=$2 got=$3
  if [ "$got" = "$want" ]; then
    echo "ok   $what"
    pass=$((pass + 1))
  else
    echo "FAIL $what: exit $got, want $want"
    fail=$((fail + 1))
  fi
}

rc=0
test/vm/run.sh 'exit 3' || rc=$?
check "exit status of the command propagates" 3 "$rc"

out=$(mktemp -d "$PWD/.vm-out/selftest.XXXXXX")
rc=0
VDUSE_CSI_VM_OUT="$out" VDUSE_CSI_SELFTEST='a b$c' VDUSE_CSI_SELFTEST_CWD="$PWD" test/vm/run.sh '
  set -e
  ls /dev/vduse/control
  test -d /sys/bus/vdpa
  test "$VDUSE_CSI_SELFTEST" = "a b\$c"
  test "$(stat -f -c %T "$VDUSE_CSI_SCRATCH")" = tmpfs
  touch "$VDUSE_CSI_SCRATCH/x"
  test "$(ulimit -n)" -ge 65536
  test "$PWD" = "$VDUSE_CSI_SELFTEST_CWD"
  echo written >"$VDUSE_CSI_OUT/probe"' || rc=$?
check "VDUSE present, env, scratch, cwd" 0 "$rc"
if [ "$(cat "$out/probe" 2>/dev/null)" = written ] && [ -s "$out/dmesg.txt" ] && [ "$(cat "$out/exit_code")" = 0 ]; then
  echo "ok   output directory shared (probe, dmesg.txt, exit_code)"
  pass=$((pass + 1))
  rm -rf "$out"
else
  echo "FAIL output directory $out lacks probe, dmesg.txt or exit_code"
  fail=$((fail + 1))
fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
