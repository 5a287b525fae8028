#!/usr/bin/env bash
# Block-device benchmark (`npm run bench`): our VDUSE device server versus qemu-storage-daemon's
# vduse-blk, side by side in ONE VM boot (test/vm/run.sh), driven by the compiled bench/ (dist/bench/main.js).
# With VDUSE_CSI_BENCH_RBD, the same boot also starts a single-node Ceph cluster and compares RBD
# clients on one pool: ours (the daemon layout), qemu-storage-daemon's rbd driver, rbd-nbd, krbd and
# fio's rbd engine, then SIGKILLs ours and rbd-nbd under verified writes (docs/bench.md).
#
#   scripts/bench.sh                 full run (~15 min in TCG)
#   VDUSE_CSI_BENCH_RUNTIME=3 VDUSE_CSI_BENCH_RAMP=1 VDUSE_CSI_BENCH_REPEATS=1 scripts/bench.sh   quick
#   VDUSE_CSI_BENCH_RBD=1 VDUSE_CSI_BENCH_FILE=0 VDUSE_CSI_BENCH_MEMORY=0 VDUSE_CSI_BENCH_QUEUES=1 \
#     VDUSE_CSI_BENCH_JOBS=randread-4k-qd32,randwrite-4k-qd32,read-1m-qd8 scripts/bench.sh   RBD only
#
# Installs and builds first (scripts/install-deps.sh, npm run build), like the README's commands.
# Results (results.json, results.md, raw fio JSON and server logs) go to .vm-out/bench-<timestamp>/
# or to $VDUSE_CSI_BENCH_OUT. Knobs (environment, defaults):
#   VDUSE_CSI_BENCH_RUNTIME  seconds per fio run (10)     VDUSE_CSI_BENCH_RAMP     ramp seconds (2)
#   VDUSE_CSI_BENCH_REPEATS  repeats (3)                  VDUSE_CSI_BENCH_QUEUES   queue counts ("1 2")
#   VDUSE_CSI_BENCH_WARMUP   seconds of the first job each layout runs unmeasured once it serves (15; 0 none)
#   VDUSE_CSI_BENCH_JOBS     subset of the fio jobs (all) VDUSE_CSI_BENCH_SIZE_MIB image MiB (1024)
#   VDUSE_CSI_BENCH_DAEMONS  layouts ("qemu ours daemon daemon-uncounted daemon-large-io")
#   VDUSE_CSI_BENCH_MEMORY   1/0 memory case (1)
#   VDUSE_CSI_BENCH_MEM_DEVICES counts of volumes in the memory case (16,64), VDUSE_CSI_BENCH_MEM_SIZE_MIB their MiB (64)
#   VDUSE_CSI_BENCH_STAGE    1/0 the stage case: NodeStageVolume through the plugin beside the
#                            qemu-storage-daemon + vdpa dev add + mkfs + mount flow (1)
#   VDUSE_CSI_BENCH_STAGE_VOLUMES volumes staged at once, then one after another (16)
#   VDUSE_CSI_BENCH_READY_TIMEOUT seconds a layout may take to serve its volumes (400)
#   VDUSE_CSI_BENCH_FILE     1/0 the file case (the layouts above on a tmpfs image) (1)
#   VDUSE_CSI_BENCH_RBD      RBD clients: 0 none, 1 all, or a subset of
#                            "daemon qemu rbd-nbd krbd fio-rbd" (0)
#   VDUSE_CSI_BENCH_RBD_SIZE_MIB MiB of each client's image (256)
#   VDUSE_CSI_BENCH_KILL_MIB MiB the kill case's verified writes cover (16)
#   VDUSE_CSI_BENCH_VM_MEMORY guest memory (4G): the memstore OSD holds every image in it
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

out=${VDUSE_CSI_BENCH_OUT:-$ROOT/.vm-out/bench-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
out=$(cd "$out" && pwd)

scripts/install-deps.sh --bench >/dev/null
npm run --silent build

export VDUSE_CSI_VM_OUT="$out"
export VDUSE_CSI_VM_MEMORY="${VDUSE_CSI_BENCH_VM_MEMORY:-4G}"
export VDUSE_CSI_VM_TIMEOUT="${VDUSE_CSI_BENCH_VM_TIMEOUT:-2700}"
# The 1 GiB image and the memory case's images live on the scratch tmpfs.
export VDUSE_CSI_SCRATCH_SIZE="${VDUSE_CSI_SCRATCH_SIZE:-75%}"

rc=0
test/vm/run.sh node dist/bench/main.js || rc=$?

if [ -f "$out/results.md" ]; then
  echo "[bench] results: $out/results.md and $out/results.json"
else
  echo "[bench] no results were written (exit $rc); see $out" >&2
  [ "$rc" != 0 ] || rc=1
fi
exit "$rc"
