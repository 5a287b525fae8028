# The vduse-csi image: the CSI plugin (controller and node) and the device server it spawns.
#
#   docker build -t registry.example.com/vduse-csi:0.1.0 .
#
# Without a registry or a Docker engine, scripts/build-image.sh builds this file with buildah on
# bases it makes with debootstrap, and writes the image as an OCI archive (docs/install.md).
#
# Node.js: Debian bookworm packages Node 18, and the project needs Node >= 20, so the runtime
# stage takes the node binary of the build stage (the official node:20 image, built for glibc on
# bookworm: it runs unchanged on debian:bookworm-slim). A BASE_IMAGE other than a node:20 bookworm
# image must have node and npm on PATH and an official-build-like /usr/local/bin/node that runs on
# RUNTIME_IMAGE (scripts/build-image.sh's build base has Node's own linux-x64 build there).
ARG BASE_IMAGE=node:20-bookworm-slim
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
WORKDIR /src
# Dependencies first: the layer stays cached while only sources change.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY scripts/bundle.js scripts/
COPY proto/ proto/
COPY src/ src/
RUN npm run build && npm prune --omit=dev

FROM ${RUNTIME_IMAGE}
# mkfs/fsck/resize2fs (e2fsprogs), mkfs.xfs/xfs_growfs (xfsprogs), mount/umount (mount),
# blkid/blockdev (util-linux), modprobe for the node's init container (kmod), librbd1 (with
# librados2) that RBD volumes are served through (src/backend/librbd.ts), and tini as PID 1:
# it reaps the device servers' orphaned standby processes, forwards SIGTERM to the plugin alone
# and leaves the device servers to be killed, never stopped, when the container goes (a stopped
# server would remove its device; a killed one leaves it for the next plugin to take over).
RUN apt-get update \
 && apt-get install -y --no-install-recommends e2fsprogs xfsprogs util-linux mount kmod librbd1 tini \
 && rm -rf /var/lib/apt/lists/*

COPY --from=build /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/proto/ proto/
COPY --from=build /src/dist/bundle/ dist/bundle/
# What the bundle leaves external (scripts/bundle.js): koffi, with its prebuilt native package.
# Everything else is inside dist/bundle. A new external in bundle.js needs a line here.
COPY --from=build /src/node_modules/koffi/ node_modules/koffi/
COPY --from=build /src/node_modules/@koromix/ node_modules/@koromix/

# The controller runs as this user; the node DaemonSet runs the same image as root
# (securityContext runAsUser: 0, privileged).
RUN groupadd --system --gid 65532 vduse && useradd --system --uid 65532 --gid vduse \
      --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin vduse
USER 65532:65532

# Last: a build argument that changes (REVISION, at every commit) invalidates the cached layers of
# the steps after its ARG line, and here there are none left to redo.
ARG RUNTIME_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="vduse-csi" \
      org.opencontainers.image.description="CSI driver csi.vduse.dev: virtio-blk volumes served from user space through VDUSE" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${RUNTIME_IMAGE}"

ENTRYPOINT ["/usr/bin/tini", "--", "node", "/app/dist/bundle/vduse-csi.js"]
CMD ["--help"]
