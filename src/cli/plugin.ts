import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { log, setLogLevel } from '../log';
import { ControllerService } from '../csi/controller';
import { HealthEndpoint } from '../csi/health';
import { IdentityService } from '../csi/identity';
import { LocalRealizer } from '../csi/local-realizer';
import { LocalStore } from '../csi/local-store';
import { NodeService } from '../csi/node';
import { OperationLocks } from '../csi/operation-locks';
import { SingleNode } from '../csi/placement';
import { loadCsiServices } from '../csi/proto';
import { nodeOnlyController } from '../csi/node-only-controller';
import { ServiceBinding, serveCsi, shutdownCsi } from '../csi/server';
import { CephClusters } from '../csi/rbd/clusters';
import { RbdController } from '../csi/rbd/rbd-controller';
import { RbdNodeVolumes } from '../csi/rbd/rbd-node';
import { VolumeServers } from '../csi/volume-servers';
import { volumeEventSink } from '../csi/volume-events';
import { registerNodeVolumeMetrics } from '../metrics/node-volume-metrics';
import type { Cluster } from '../k8s/cluster';
import type { NodeAgent } from '../k8s/node-agent';
import { registerControllerMetrics } from '../metrics/controller-metrics';
import { csiCallMetrics } from '../metrics/csi-calls';
import { MetricsEndpoint } from '../metrics/endpoint';
import { storeInventory } from '../metrics/inventory';
import { processRegistry } from '../metrics/registry';
import { ImageDirectory } from '../storage/images';
import { parseListenAddress } from '../sys/http-listener';
import { parseBytes, parseInteger } from './units';

const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export interface PluginOptions {
  mode: 'controller' | 'node' | 'all';
  endpoint: string;
  nodeId: string;
  dataDir: string;
  stateDir: string;
  maxVolumes: number;
  maxVolumeBytes: number;
  logLevel: string;
  /** The device daemon the plugin starts keeps a warm standby (default; --no-standby turns it off). */
  standby: boolean;
  /** The device daemon runs on its own (--external-daemon): the plugin never starts or upgrades it. */
  externalDaemon: boolean;
  /** The log of the daemon the plugin starts is rotated past this size (--daemon-log-max-size). */
  daemonLogMaxBytes?: number;
  /** Records in <state-dir> (single host, the default) or as Kubernetes custom resources (cluster). */
  store?: 'local' | 'kubernetes';
  /** The driver's namespace, for the node capacity ConfigMap (--store kubernetes). */
  kubeNamespace?: string;
  /** Where kubelet's probes reach /healthz and /readyz (none when absent). */
  healthAddress?: string;
  /** Where GET /metrics is served (none when absent). */
  metricsAddress?: string;
  /** This plugin's Pod, for Events about its readiness (--store kubernetes). */
  pod?: { name: string; uid?: string };
  /** The Ceph clusters RBD StorageClasses name by clusterID (read afresh on each use). */
  cephClusters?: string;
}

/** Below this, a rotation every second could not keep up with a chatty daemon. */
const DAEMON_LOG_MIN_BYTES = 64 * 1024;

function parseDaemonLogMaxBytes(text: string): number {
  const bytes = parseBytes(text);
  if (bytes < DAEMON_LOG_MIN_BYTES)
    throw new Error(`--daemon-log-max-size must be at least 64K, got ${text}`);
  return bytes;
}

export function parsePluginOptions(argv: string[]): PluginOptions {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      mode: { type: 'string', default: 'all' },
      endpoint: { type: 'string' },
      'node-id': { type: 'string' },
      'data-dir': { type: 'string' },
      'state-dir': { type: 'string' },
      'max-volumes': { type: 'string', default: '64' },
      'max-volume-size': { type: 'string', default: '16T' },
      'log-level': { type: 'string', default: 'info' },
      'no-standby': { type: 'boolean', default: false },
      'external-daemon': { type: 'boolean', default: false },
      'daemon-log-max-size': { type: 'string', default: '32M' },
      store: { type: 'string', default: 'local' },
      'kube-namespace': { type: 'string', default: 'default' },
      'health-address': { type: 'string' },
      'metrics-address': { type: 'string' },
      'pod-name': { type: 'string' },
      'pod-uid': { type: 'string' },
      'ceph-clusters': { type: 'string' },
    },
  });
  const mode = values.mode!;
  if (mode !== 'controller' && mode !== 'node' && mode !== 'all')
    throw new Error(`--mode must be controller, node or all, got ${mode}`);
  const store = values.store!;
  if (store !== 'local' && store !== 'kubernetes')
    throw new Error(`--store must be local or kubernetes, got ${store}`);
  for (const flag of ['endpoint', 'node-id', 'data-dir', 'state-dir'] as const) {
    if (!values[flag]) throw new Error(`--${flag} is required`);
  }
  if (!NODE_ID.test(values['node-id']!))
    throw new Error(`--node-id ${values['node-id']} is not a valid node name`);
  for (const flag of ['health-address', 'metrics-address'] as const)
    if (values[flag] !== undefined) parseListenAddress(values[flag], `--${flag}`);
  const podName = values['pod-name'];
  if (podName !== undefined && !NODE_ID.test(podName))
    throw new Error(`--pod-name ${podName} is not a valid pod name`);
  if (values['pod-uid'] !== undefined && podName === undefined) throw new Error('--pod-uid needs --pod-name');
  return {
    mode,
    endpoint: values.endpoint!,
    nodeId: values['node-id']!,
    dataDir: values['data-dir']!,
    stateDir: values['state-dir']!,
    maxVolumes: parseInteger(values['max-volumes']!, '--max-volumes', 1, 4096),
    maxVolumeBytes: parseBytes(values['max-volume-size']!),
    logLevel: values['log-level']!,
    standby: !values['no-standby'],
    externalDaemon: values['external-daemon']!,
    daemonLogMaxBytes: parseDaemonLogMaxBytes(values['daemon-log-max-size']!),
    store,
    kubeNamespace: values['kube-namespace']!,
    healthAddress: values['health-address'],
    metricsAddress: values['metrics-address'],
    pod: podName === undefined ? undefined : { name: podName, uid: values['pod-uid'] },
    cephClusters: values['ceph-clusters'],
  };
}

export interface RunningPlugin {
  /** Lets in-flight calls finish and closes the socket; the device daemon keeps serving. */
  stop(): Promise<void>;
  /** The port GET /metrics is served on, with --metrics-address. */
  metricsPort: number | undefined;
}

/** Starts the CSI services `options` ask for on their socket. */
export async function startPlugin(options: PluginOptions, cliCommand: string[]): Promise<RunningPlugin> {
  const withController = options.mode !== 'node';
  const withNode = options.mode !== 'controller';
  const images = new ImageDirectory(options.dataDir);
  const locks = new OperationLocks();
  const servers = new VolumeServers({
    stateDir: options.stateDir,
    command: cliCommand,
    logLevel: options.logLevel,
    standby: options.standby,
    external: options.externalDaemon,
    daemonLogMaxBytes: options.daemonLogMaxBytes,
    copyDirs: images.directories(),
  });
  const localRealizer = new LocalRealizer(images, servers);
  const cephClusters = new CephClusters(options.cephClusters, options.stateDir);
  const cluster = options.store === 'kubernetes' ? await connectCluster(options) : null;
  const store = cluster?.store ?? new LocalStore(options.stateDir);
  const services = loadCsiServices();
  const identity = new IdentityService({
    controller: withController,
    node: withNode,
    dataDir: options.dataDir,
    onReadinessChange: options.pod && cluster?.readinessEvents(options.pod).onChange,
  });
  const bindings: ServiceBinding[] = [{ definition: services.identity, handlers: identity }];
  const metrics = options.metricsAddress === undefined ? undefined : processRegistry();
  if (withController) {
    mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
    if (!cluster) {
      images.removeLeftovers('volumes');
      images.removeLeftovers('snapshots');
    }
    const placement = cluster?.placement() ?? new SingleNode(options.nodeId, images);
    const controller = new ControllerService({
      store,
      realizer: cluster?.realizer() ?? localRealizer,
      placement,
      locks,
      maximumVolumeBytes: options.maxVolumeBytes,
      rbd: new RbdController({ clusters: cephClusters, locks, maximumVolumeBytes: options.maxVolumeBytes }),
    });
    bindings.push({ definition: services.controller, handlers: controller });
    if (metrics)
      registerControllerMetrics(metrics, {
        inventory: cluster?.inventory() ?? storeInventory(store),
        placement,
      });
  } else {
    bindings.push({ definition: services.controller, handlers: nodeOnlyController });
  }
  let node: NodeService | undefined;
  let agent: NodeAgent | undefined;
  if (withNode) {
    const nodeAgent = cluster?.nodeAgent(options.nodeId, images, localRealizer);
    const events = cluster?.countedEvents;
    const reportEvent = volumeEventSink(
      events
        ? {
            onClaim: (claim, event) =>
              events.onClaim(claim, event.type, event.reason, event.message, event.count),
            onPod: (pod, event) => events.onPod(pod, event.type, event.reason, event.message, event.count),
          }
        : null,
    );
    const countEvent = metrics && registerNodeVolumeMetrics(metrics, () => node?.stagedVolumes() ?? []);
    node = new NodeService({
      store,
      images,
      servers,
      locks,
      stateDir: options.stateDir,
      nodeId: options.nodeId,
      maxVolumes: options.maxVolumes,
      rbd: new RbdNodeVolumes(cephClusters, options.stateDir),
      onDevice: nodeAgent && ((volumeId, devicePath) => nodeAgent.reportDevice(volumeId, devicePath)),
      events: (event) => {
        reportEvent(event);
        countEvent?.(event);
      },
    });
    bindings.push({ definition: services.node, handlers: node });
    agent = nodeAgent;
  }
  const server = await serveCsi(options.endpoint, bindings, metrics && csiCallMetrics(metrics));
  const health =
    options.healthAddress === undefined
      ? undefined
      : await HealthEndpoint.start({
          address: options.healthAddress,
          csiEndpoint: options.endpoint,
          readinessProblem: () => identity.readinessProblem(),
        });
  const metricsEndpoint = metrics && (await MetricsEndpoint.start(options.metricsAddress!, metrics));
  node?.startSupervising();
  agent?.start();
  log.info('csi plugin serving', { mode: options.mode, endpoint: options.endpoint, node: options.nodeId });
  return {
    metricsPort: metricsEndpoint?.port,
    stop: async () => {
      await health?.close();
      await metricsEndpoint?.close();
      node?.stopSupervising();
      await agent?.stop();
      await shutdownCsi(server);
    },
  };
}

/** Loaded on demand: the Kubernetes client is big, and the single-host plugin never needs it. */
async function connectCluster(options: PluginOptions): Promise<Cluster> {
  const { Cluster } = await import('../k8s/cluster');
  return Cluster.fromDefaultConfig(options.kubeNamespace ?? 'default', options.nodeId);
}

/** `vduse-csi plugin`: serves CSI until SIGTERM or SIGINT; the device daemon keeps serving the volumes. */
export async function plugin(argv: string[]): Promise<void> {
  const options = parsePluginOptions(argv);
  setLogLevel(options.logLevel);
  // Device servers run the blk-only bundle next to this one (it starts faster).
  const running = await startPlugin(options, [
    process.execPath,
    join(dirname(process.argv[1]!), 'vduse-blk.js'),
  ]);
  const signal = await new Promise<string>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  log.info('csi plugin stopping: in-flight calls finish, the device daemon keeps serving', { signal });
  await running.stop();
}
