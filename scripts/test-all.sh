#!/usr/bin/env bash
# The full test suite: installs what it needs, builds, lints, runs the unit tests on the host, builds
# and checks the container image and loads it into containerd, and runs the kernel tests on a real
# VDUSE kernel (in a VM when the host kernel lacks VDUSE).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
npm run build
npm run lint
npx mocha 'dist/test/unit/**/*.test.js'
# The container image, built with buildah on debootstrap'd bases (no registry, no Docker engine), and
# checked from the OCI archive it is written to.
scripts/build-image.sh
# The archive as a node without a registry loads it (ctr import into a containerd of the test's own).
npx mocha 'dist/test/image/**/*.test.js'
# mocha is started directly, not through npx: in the VM every file lookup crosses 9p, and npm's
# own start-up alone costs thousands of them (minutes under software emulation). For the same
# reason it runs the kernel tests from one bundle of them all (scripts/bundle.js), and prints each
# suite's wall time (test/kernel/suite-timing.ts).
# 4G: the CSI tests run 16 volumes at once (on one device daemon and its standby), beside fio.
VDUSE_CSI_VM_MEMORY=${VDUSE_CSI_VM_MEMORY:-4G} VDUSE_CSI_VM_TIMEOUT=${VDUSE_CSI_VM_TIMEOUT:-3300} test/vm/run.sh "node node_modules/mocha/bin/mocha.js --timeout 1800000 --require dist/test/kernel/suite-timing.js dist/test/kernel/kernel-tests.bundle.js"
