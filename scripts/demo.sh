#!/usr/bin/env bash
# The main job on the embedded default: serves a file-backed volume as /dev/vdX through VDUSE,
# makes a filesystem on it, writes and reads back data, and removes it again, printing each step.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh >/dev/null
npm run --silent build
test/vm/run.sh 'bash scripts/demo-guest.sh'
