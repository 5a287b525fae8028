#!/usr/bin/env bash
# Installs what the VM rig and the tests need on a Debian 12 host: Debian packages, virtme-ng and
# the Debian 6.12 kernel (which has VDUSE) from trixie, and the npm packages. Idempotent.
#   scripts/install-deps.sh --bench   also what only `npm run bench` uses (BENCH_PACKAGES)
set -euo pipefail
cd "$(dirname "$0")/.."

KERNEL_PKG=linux-image-6.12.107+deb13-amd64
HOST_PACKAGES=(udev kmod iproute2 fio e2fsprogs xfsprogs util-linux qemu-utils qemu-system-x86
  file busybox-static python3-argcomplete python3-pkg-resources python3-requests ca-certificates
  runc openssl containerd ceph-mon ceph-osd ceph-common librbd1 librados2)

# The RBD clients the bench compares with ours: rbd-nbd (ceph-csi's userspace mounter) and
# qemu-storage-daemon's rbd driver (a module in qemu-block-extra).
BENCH_PACKAGES=(rbd-nbd qemu-block-extra)
[ "${1:-}" != --bench ] || HOST_PACKAGES+=("${BENCH_PACKAGES[@]}")

need_apt=0
# From trixie: virtme-ng, and promtool (the metrics tests' `promtool check metrics`), which bookworm
# ships only inside its prometheus package, a whole Prometheus server (service, web assets).
TRIXIE_PACKAGES=(virtme-ng promtool)

for p in "${HOST_PACKAGES[@]}" "${TRIXIE_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_apt=1
done
kernel_ver=${KERNEL_PKG#linux-image-}
[ -f "/boot/vmlinuz-$kernel_ver" ] && [ -d "/lib/modules/$kernel_ver/kernel/drivers/vdpa" ] || need_apt=1

if [ "$need_apt" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  scripts/apt-suite.sh trixie
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${HOST_PACKAGES[@]}"
  apt-get install -y -q --no-install-recommends "${TRIXIE_PACKAGES[@]/%//trixie}" # each as NAME/trixie
  if [ ! -f "/boot/vmlinuz-$kernel_ver" ] || [ ! -d "/lib/modules/$kernel_ver/kernel/drivers/vdpa" ]; then
    # The kernel's maintainer scripts expect a trixie userland; unpacking is all the VM needs.
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download -q "$KERNEL_PKG/trixie")
    dpkg-deb -x "$tmp"/*.deb /
    rm -rf "$tmp"
    depmod "$kernel_ver"
  fi
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
