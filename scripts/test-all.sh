#!/usr/bin/env bash
# The full test suite: installs what it needs, builds, lints, runs the unit tests on the host and the
# kernel tests on a real VDUSE kernel (in a VM when the host kernel lacks VDUSE).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
npm run build
npm run lint
npx mocha 'dist/test/unit/**/*.test.js'
test/vm/run.sh "npx mocha --timeout 300000 'dist/test/kernel/**/*.test.js'"
