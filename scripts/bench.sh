#!/usr/bin/env bash
# Block-device benchmark (`npm run bench`): our VDUSE daemon versus qemu-storage-daemon's vduse-blk,
# side by side in ONE VM boot (test/vm/run.sh), driven by bench/bench.py (python3, stdlib only).
#
#   scripts/bench.sh                 full run (~8 min qemu only, ~15 min with ours, in TCG)
#   VDUSE_CSI_BENCH_RUNTIME=3 VDUSE_CSI_BENCH_RAMP=1 VDUSE_CSI_BENCH_REPEATS=1 scripts/bench.sh   quick
#
# Installs and builds first (scripts/install-deps.sh, npm run build), like the README's commands.
# Results (results.json, results.md, raw fio JSON and daemon logs) go to .vm-out/bench-<timestamp>/
# or to $VDUSE_CSI_BENCH_OUT. Other knobs: see the header of bench/bench.py.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

out=${VDUSE_CSI_BENCH_OUT:-$ROOT/.vm-out/bench-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
out=$(cd "$out" && pwd)

scripts/install-deps.sh >/dev/null
npm run --silent build

# The guest's python3 is the distribution's; a host PATH may put another one (pyenv) first.
py=python3
[ -x /usr/bin/python3 ] && py=/usr/bin/python3

export VDUSE_CSI_VM_OUT="$out"
export VDUSE_CSI_VM_MEMORY="${VDUSE_CSI_BENCH_VM_MEMORY:-4G}"
export VDUSE_CSI_VM_TIMEOUT="${VDUSE_CSI_BENCH_VM_TIMEOUT:-2700}"
# The 1 GiB image and the memory-figure images live on the scratch tmpfs.
export VDUSE_CSI_SCRATCH_SIZE="${VDUSE_CSI_SCRATCH_SIZE:-75%}"

rc=0
test/vm/run.sh "$(printf '%q bench/bench.py --root %q --out %q' "$py" "$ROOT" "$out")" || rc=$?

if [ -f "$out/results.md" ]; then
  echo "[bench] results: $out/results.md and $out/results.json"
else
  echo "[bench] no results were written (exit $rc); see $out" >&2
  [ "$rc" != 0 ] || rc=1
fi
exit "$rc"
