#!/usr/bin/env bash
# The main job on the embedded default: the CSI plugin (controller and node on one unix socket)
# takes file-backed volumes through the whole kubelet flow over gRPC on a real VDUSE kernel:
# create, stage (/dev/vdX + mkfs + mount), publish, write, restage, expand, snapshot, restore,
# clean-up, for ext4, xfs and a raw block volume, printing each step.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh >/dev/null
npm run --silent build
VDUSE_CSI_VM_MEMORY=${VDUSE_CSI_VM_MEMORY:-4G} test/vm/run.sh 'node dist/test/e2e/demo.js'
