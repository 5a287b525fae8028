#!/usr/bin/env bash
# Adds a Debian suite (default: trixie) through the mirror this machine already uses, pinned low
# so only packages named explicitly come from it. Idempotent.
set -euo pipefail
suite=${1:-trixie}
list=/etc/apt/sources.list.d/vduse-csi-$suite.sources
pin=/etc/apt/preferences.d/vduse-csi-$suite

mirror_uri() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' "$f"
  done | head -n 1
  if [ -f /etc/apt/sources.list ]; then
    awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; exit } }' /etc/apt/sources.list
  fi
}

if [ ! -f "$list" ]; then
  uri=$(mirror_uri | head -n 1)
  [ -n "$uri" ] || { echo "apt-suite: no Debian mirror found in the existing apt sources" >&2; exit 1; }
  cat >"$list" <<EOS
Types: deb
URIs: $uri
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOS
  cat >"$pin" <<EOS
Package: *
Pin: release n=$suite
Pin-Priority: 100
EOS
  rm -f /var/lib/apt/periodic/vduse-csi-updated
fi
