#!/usr/bin/env bash
# A throwaway single-node Ceph cluster for tests: one monitor, one memstore OSD, an initialised RBD
# pool of size 1, no ceph-mgr. Everything it makes (state, keyrings, sockets, pid files, logs) lives
# under DIR, so several clusters can run side by side and `rm -rf DIR` after `stop` leaves nothing.
#
#   scripts/ceph-cluster.sh start DIR   empties DIR (refused while a cluster runs there), prints
#                                       DIR/ceph.conf once the pool takes writes; the daemons keep
#                                       running in the background
#   scripts/ceph-cluster.sh stop DIR    stops the daemons started in DIR (nothing running: no-op)
#
# Made in DIR: ceph.conf, ceph.client.admin.keyring, and ceph.client.$VDUSE_CSI_CEPH_USER.keyring
# for a user with nothing but `profile rbd` on the pool (for tests of non-admin credentials).
#
# Environment:
#   VDUSE_CSI_CEPH_POOL             pool name (default rbd)
#   VDUSE_CSI_CEPH_USER             the rbd-only user, without "client." (default vduse-csi)
#   VDUSE_CSI_CEPH_MEMSTORE_BYTES   the OSD's capacity, held in memory (default 2 GiB; a page is
#                                   only allocated when written, budget ~4x the data in RAM)
#   VDUSE_CSI_CEPH_START_TIMEOUT    seconds until start gives up (default 900: ~140 s under the VM's
#                                   software emulation, ~10 s on a host)
set -euo pipefail

POOL=${VDUSE_CSI_CEPH_POOL:-rbd}
RBD_USER=${VDUSE_CSI_CEPH_USER:-vduse-csi}
MEMSTORE_BYTES=${VDUSE_CSI_CEPH_MEMSTORE_BYTES:-$((2 << 30))}
START_TIMEOUT=${VDUSE_CSI_CEPH_START_TIMEOUT:-900}
# In stopping order: an OSD whose monitor is gone waits for it (osd_mon_shutdown_timeout).
DAEMONS=(osd.0 mon.a)

usage() {
  echo "usage: $0 start|stop DIR" >&2
  exit 2
}

log() { echo "[ceph-cluster] $*" >&2; }

[ "$#" -eq 2 ] || usage
ACTION=$1
[ "$ACTION" != stop ] || [ -d "$2" ] || exit 0
DIR=$(mkdir -p "$2" && cd "$2" && pwd)
CONF=$DIR/ceph.conf
DEADLINE=$((SECONDS + START_TIMEOUT))

ceph_cli() { ceph --conf "$CONF" --connect-timeout 30 "$@"; }

# The pid in DIR/run/NAME.pid if that process is still the daemon started from DIR.
daemon_pid() {
  local pid_file=$DIR/run/$1.pid pid
  [ -f "$pid_file" ] || return 1
  pid=$(cat "$pid_file")
  [ -n "$pid" ] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$CONF" || return 1
  echo "$pid"
}

stop_daemons() {
  local name pid
  for name in "${DAEMONS[@]}"; do
    pid=$(daemon_pid "$name") || continue
    kill -TERM "$pid" 2>/dev/null || continue
    # memstore keeps nothing worth a clean shutdown: a daemon that lingers is killed.
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  done
}

fail() {
  log "start failed: $*"
  local file
  for file in "$DIR"/log/*.log; do
    [ -f "$file" ] || continue
    log "last lines of $file:"
    tail -n 20 "$file" >&2
  done
  stop_daemons
  exit 1
}

# Runs "$@" until it succeeds; fails the start when DEADLINE passes or a daemon has died.
wait_for() {
  local what=$1 name
  shift
  until "$@" >/dev/null 2>&1; do
    for name in "${DAEMONS[@]}"; do
      [ ! -f "$DIR/run/$name.pid" ] || daemon_pid "$name" >/dev/null || fail "$name died while waiting for $what"
    done
    [ "$SECONDS" -lt "$DEADLINE" ] || fail "timed out after ${START_TIMEOUT}s waiting for $what"
    sleep 1
  done
}

# A port pair no TCP socket uses (the monitor's v2 and v1 addresses), below the kernel's ephemeral
# range so that no outgoing connection or port-0 listener can take it between the check and the
# monitor's bind. Another process binding it explicitly in between is still possible: start retries.
free_port_pair() {
  local used port ephemeral_low
  read -r ephemeral_low _ </proc/sys/net/ipv4/ip_local_port_range
  [ "$ephemeral_low" -gt 12000 ] || ephemeral_low=32768
  used=$(ss -Htan | awk '{ n = split($4, a, ":"); print a[n] }')
  for _ in $(seq 100); do
    port=$((10000 + (RANDOM % ((ephemeral_low - 10002) / 2)) * 2))
    grep -qx -e "$port" -e "$((port + 1))" <<<"$used" || {
      echo "$port"
      return
    }
  done
  fail "no free port pair for the monitor"
}

write_conf() {
  local fsid=$1 port=$2
  cat >"$CONF" <<EOF
[global]
fsid = $fsid
mon_host = [v2:127.0.0.1:$port,v1:127.0.0.1:$((port + 1))]
keyring = $DIR/\$cluster.\$name.keyring
run_dir = $DIR/run
log_file = $DIR/log/\$name.log
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
auth_allow_insecure_global_id_reclaim = false
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_warn_on_pool_no_redundancy = false
# No ceph-mgr: without this, health turns to "no active mgr" after mon_mgr_mkfs_grace (120 s).
mon_mgr_mkfs_grace = 31536000
# Preloading gf-complete's plugins dies with SIGILL on an emulated CPU; no pool here uses EC.
osd_erasure_code_plugins = ""

[mon]
mon_data = $DIR/\$name
pid_file = $DIR/run/\$name.pid
admin_socket = $DIR/run/\$name.asok

[osd]
osd_data = $DIR/\$name
pid_file = $DIR/run/\$name.pid
admin_socket = $DIR/run/\$name.asok
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
osd_objectstore = memstore
memstore_device_bytes = $MEMSTORE_BYTES
# 4 KiB pages: whole 4 MiB objects resident would cost ~4x the memory for random writes.
memstore_page_set = true
memstore_page_size = 4096

[client]
# The pid keeps the sockets of concurrent client processes apart.
admin_socket = $DIR/run/\$name.\$pid.asok
log_file = $DIR/log/\$name.\$pid.log
EOF
}

# Leaves MONITOR_BOUND=false (and DIR/mon.a removed) when the monitor could not bind its port pair.
# (A status return would run the body with errexit off.)
start_monitor() {
  local fsid=$1 port=$2
  ceph-authtool --create-keyring "$DIR/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool --create-keyring "$DIR/ceph.client.admin.keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
  ceph-authtool "$DIR/mon.keyring" --import-keyring "$DIR/ceph.client.admin.keyring" >/dev/null
  monmaptool --create --clobber --fsid "$fsid" --addv a "[v2:127.0.0.1:$port,v1:127.0.0.1:$((port + 1))]" \
    "$DIR/monmap" >/dev/null
  ceph-mon --conf "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/mon.keyring" ||
    fail "ceph-mon --mkfs"
  if ! ceph-mon --conf "$CONF" -i a </dev/null >>"$DIR/log/mon.a.out" 2>&1; then
    grep -q "unable to bind monitor" "$DIR/log/mon.a.log" 2>/dev/null || fail "ceph-mon"
    log "the monitor could not bind port $port or $((port + 1)); trying another pair"
    rm -rf "${DIR:?}/mon.a" "$DIR/log/mon.a.log"
    MONITOR_BOUND=false
    return
  fi
  MONITOR_BOUND=true
  wait_for "the monitor" ceph_cli mon stat
}

start_osd() {
  local uuid secret id
  uuid=$(cat /proc/sys/kernel/random/uuid)
  secret=$(ceph-authtool --gen-print-key)
  id=$(echo "{\"cephx_secret\": \"$secret\"}" | ceph_cli osd new "$uuid" -i -) || fail "ceph osd new"
  [ "$id" = 0 ] || fail "the new OSD got id $id, not 0"
  mkdir -p "$DIR/osd.0"
  ceph-authtool --create-keyring "$DIR/ceph.osd.0.keyring" --name osd.0 --add-key "$secret" >/dev/null
  ceph-osd --conf "$CONF" -i 0 --mkfs --osd-uuid "$uuid" --no-mon-config \
    </dev/null >>"$DIR/log/osd.0.out" 2>&1 || fail "ceph-osd --mkfs"
  ceph-osd --conf "$CONF" -i 0 </dev/null >>"$DIR/log/osd.0.out" 2>&1 || fail "ceph-osd"
  wait_for "the OSD to be up" osd_up
}

osd_up() {
  ceph_cli osd dump --format json | grep -q '"osd":0,"uuid":"[^"]*","up":1'
}

# Writes, reads and removes an object with a bounded timeout: the pool serves I/O.
pool_takes_writes() {
  local timeouts=(--rados-osd-op-timeout 10 --rados-mon-op-timeout 10)
  echo probe | rados --conf "$CONF" "${timeouts[@]}" -p "$POOL" put ceph-cluster-probe - &&
    rados --conf "$CONF" "${timeouts[@]}" -p "$POOL" stat ceph-cluster-probe &&
    rados --conf "$CONF" "${timeouts[@]}" -p "$POOL" rm ceph-cluster-probe
}

start() {
  if daemon_pid mon.a >/dev/null || daemon_pid osd.0 >/dev/null; then
    log "a cluster already runs in $DIR"
    exit 1
  fi
  rm -rf "${DIR:?}"/*
  mkdir -p "$DIR/run" "$DIR/log"
  local fsid port attempt
  fsid=$(cat /proc/sys/kernel/random/uuid)
  for attempt in 1 2 3 4 5; do
    port=$(free_port_pair) || exit 1
    write_conf "$fsid" "$port"
    start_monitor "$fsid" "$port"
    ! $MONITOR_BOUND || break
    [ "$attempt" -lt 5 ] || fail "no port pair the monitor could bind after $attempt tries"
  done
  start_osd
  ceph_cli osd pool create "$POOL" >/dev/null 2>&1 || fail "ceph osd pool create $POOL"
  # clone v2: clones of unprotected snapshots.
  ceph_cli osd set-require-min-compat-client mimic >/dev/null 2>&1 || fail "set-require-min-compat-client"
  wait_for "the pool to take writes" pool_takes_writes
  rbd --conf "$CONF" pool init "$POOL" || fail "rbd pool init $POOL"
  ceph_cli auth get-or-create "client.$RBD_USER" mon 'profile rbd' osd "profile rbd pool=$POOL" \
    mgr "profile rbd pool=$POOL" -o "$DIR/ceph.client.$RBD_USER.keyring" || fail "creating client.$RBD_USER"
  chmod 600 "$DIR/ceph.client.$RBD_USER.keyring"
  echo "$CONF"
}

case "$ACTION" in
  start) start ;;
  stop) stop_daemons ;;
  *) usage ;;
esac
