/** `vduse-csi plugin`'s usage, apart from the plugin so the CLI loads the plugin's code only to run it. */
export const PLUGIN_USAGE = `  vduse-csi plugin --mode controller|node|all --endpoint unix:///PATH --node-id ID
                   --data-dir DIR --state-dir DIR [--max-volumes N] [--max-volume-size BYTES]
                   [--log-level LEVEL] [--no-standby | --external-daemon] [--daemon-log-max-size BYTES]
                   [--store local|kubernetes]
                   [--kube-namespace NS]
                   [--health-address HOST:PORT] [--metrics-address HOST:PORT]
                   [--pod-name NAME --pod-uid UID]
      (CSI driver csi.vduse.dev; "all" serves every service on one socket: the single-host setup;
       --store kubernetes keeps volumes as VduseVolume objects and runs the node agent in --mode node;
       volumes are served by the node's device daemon (vduse-csi daemon run on --state-dir), which the
       plugin starts when none answers, with a warm standby unless --no-standby; --external-daemon:
       the daemon runs on its own (the chart's device-daemon pods), never started or upgraded here;
       a daemon the plugin starts logs to <state-dir>/logs/daemon.log, moved to daemon.log.1 past
       --daemon-log-max-size (default 32M, at least 64K);
       --health-address serves GET /healthz (alive) and /readyz (ready) for kubelet's probes;
       --metrics-address serves GET /metrics (Prometheus text format);
       --pod-name/--pod-uid: with --store kubernetes, Events on that Pod when not ready;
       --ceph-clusters FILE: JSON [{"clusterID": ID, "monitors": [...]}] for RBD classes naming a clusterID)`;
