import { ServiceError, status } from '@grpc/grpc-js';
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { PluginOptions, RunningPlugin, startPlugin } from '../../src/cli/plugin';
import { setLogLevel } from '../../src/log';
import { CsiClients, callUnary, csiClients } from '../../src/csi/proto';
import { CAPACITY_CONFIGMAP } from '../../src/k8s/node-capacity';
import { FakeKubeApi } from './fake-kube-api';
import { stopDaemons } from './daemon-processes';

export type ServiceName = 'identity' | 'controller' | 'node';
// Responses are plain objects decoded by proto-loader; tests read them loosely.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Reply = any;

export interface HarnessOptions {
  mode?: PluginOptions['mode'];
  /** Run the plugin as its own process from this CLI (e.g. the bundle) instead of in this process. */
  cli?: string[];
  /** Directory for data, state and the socket; a fresh temporary one by default. */
  root?: string;
  nodeId?: string;
  logLevel?: string;
  standby?: boolean;
  /**
   * Where the plugin keeps its records: files in the state directory (the default), or custom
   * resources of an in-process fake Kubernetes API server (cluster mode; in mode all the node agent
   * runs in the plugin's process and realises the volumes on the same data directory).
   */
  store?: 'local' | 'kubernetes';
  /** In cluster mode, the fake API server to use, shared with other harnesses (and not stopped). */
  kubeApi?: FakeKubeApi;
  /** --ceph-clusters: the cluster file RBD classes name a clusterID of. */
  cephClusters?: string;
  /** --metrics-address (an in-process plugin: the port may be 0, see metricsUrl). */
  metricsAddress?: string;
  /** --daemon-log-max-size, in bytes. */
  daemonLogMaxBytes?: number;
}

/** The driver namespace of a harness in cluster mode (--kube-namespace). */
export const HARNESS_NAMESPACE = 'vduse-csi';

/** A CSI plugin on a real unix socket, and gRPC clients talking to it. */
export class CsiHarness {
  private clients: CsiClients | undefined;
  private inProcess: RunningPlugin | undefined;
  private child: ChildProcess | undefined;
  readonly options: PluginOptions;
  /** The fake API server of a cluster-mode harness; it outlives plugin restarts. */
  kube: FakeKubeApi | undefined;
  private readonly ownsKube: boolean;

  private constructor(
    readonly root: string,
    private readonly ownsRoot: boolean,
    private cli: string[] | undefined,
    options: HarnessOptions,
  ) {
    this.ownsKube = options.kubeApi === undefined;
    this.options = {
      mode: options.mode ?? 'all',
      endpoint: `unix://${join(root, 'csi.sock')}`,
      nodeId: options.nodeId ?? 'node-1',
      dataDir: join(root, 'data'),
      stateDir: join(root, 'state'),
      maxVolumes: 64,
      maxVolumeBytes: 2 ** 44,
      logLevel: options.logLevel ?? 'warn',
      standby: options.standby ?? true,
      externalDaemon: false,
      store: options.store ?? 'local',
      ...(options.store === 'kubernetes' ? { kubeNamespace: HARNESS_NAMESPACE } : {}),
      ...(options.cephClusters === undefined ? {} : { cephClusters: options.cephClusters }),
      metricsAddress: options.metricsAddress,
      daemonLogMaxBytes: options.daemonLogMaxBytes,
    };
  }

  get kubeconfigPath(): string {
    return join(this.root, 'kubeconfig');
  }

  static async start(options: HarnessOptions = {}): Promise<CsiHarness> {
    const root = options.root ?? mkdtempSync(join(tmpdir(), 'vduse-csi-'));
    const harness = new CsiHarness(root, options.root === undefined, options.cli, options);
    try {
      if (harness.options.store === 'kubernetes') {
        harness.kube = options.kubeApi ?? (await FakeKubeApi.start());
        writeFileSync(harness.kubeconfigPath, harness.kube.kubeConfig().exportConfig());
      }
      await harness.startPlugin();
    } catch (error) {
      if (!options.kubeApi) await harness.kube?.stop();
      if (harness.ownsRoot) rmSync(root, { recursive: true, force: true });
      throw error;
    }
    return harness;
  }

  get socketPath(): string {
    return join(this.root, 'csi.sock');
  }

  /** Where the in-process plugin serves GET /metrics. */
  get metricsUrl(): string {
    const port = this.inProcess?.metricsPort;
    if (port === undefined) throw new Error('no in-process plugin serves metrics');
    return `http://127.0.0.1:${port}/metrics`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async startPlugin(): Promise<void> {
    if (this.cli) {
      const [executable, ...prefix] = this.cli;
      const o = this.options;
      rmSync(this.socketPath, { force: true });
      this.child = spawn(
        executable!,
        [
          ...prefix,
          'plugin',
          ...['--mode', o.mode, '--endpoint', o.endpoint, '--node-id', o.nodeId],
          ...['--data-dir', o.dataDir, '--state-dir', o.stateDir, '--log-level', o.logLevel],
          ...(o.standby ? [] : ['--no-standby']),
          ...(this.kube ? ['--store', 'kubernetes', '--kube-namespace', o.kubeNamespace!] : []),
          ...(o.cephClusters === undefined ? [] : ['--ceph-clusters', o.cephClusters]),
          ...(o.metricsAddress === undefined ? [] : ['--metrics-address', o.metricsAddress]),
          ...(o.daemonLogMaxBytes === undefined
            ? []
            : ['--daemon-log-max-size', String(o.daemonLogMaxBytes)]),
        ],
        {
          stdio: ['ignore', 'inherit', 'inherit'],
          env: this.kube ? { ...process.env, KUBECONFIG: this.kubeconfigPath } : process.env,
        },
      );
      await this.waitForSocket();
    } else {
      setLogLevel(this.options.logLevel);
      this.inProcess = await withKubeconfig(this.kube ? this.kubeconfigPath : undefined, () =>
        startPlugin(this.options, [process.execPath, join(__dirname, '../../bundle/vduse-blk.js')]),
      );
    }
    this.clients = csiClients(this.options.endpoint);
    if (this.kube && this.options.mode !== 'controller') await this.waitForCapacityReport();
  }

  /** Stops the plugin: gracefully, or with SIGKILL for a crash (a child process only). */
  async stopPlugin(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    this.clients?.identity.close();
    this.clients = undefined;
    if (this.inProcess) await this.inProcess.stop();
    this.inProcess = undefined;
    const child = this.child;
    this.child = undefined;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill(signal);
      await exited;
    }
  }

  /** Stops the plugin and starts it again, from another CLI build when `cli` is given (an upgrade). */
  async restart(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM', cli?: string[]): Promise<void> {
    await this.stopPlugin(signal);
    if (cli) this.cli = cli;
    await this.startPlugin();
  }

  /** Stops the plugin and the device daemons it started (they outlive the plugin by design). */
  async stop(): Promise<void> {
    await this.stopPlugin();
    await stopDaemons(this.options.stateDir);
    if (this.ownsKube) await this.kube?.stop();
    this.kube = undefined;
    if (this.ownsRoot) rmSync(this.root, { recursive: true, force: true });
  }

  call(service: ServiceName, method: string, request: object = {}): Promise<Reply> {
    if (!this.clients) throw new Error('the plugin is not running');
    return callUnary(this.clients[service], method, request, { deadline: Date.now() + 600_000 });
  }

  /**
   * The call as kubelet makes it: an answer ABORTED (another operation on the volume is under way,
   * such as the node's supervision serving it again after a daemon kill) is asked again, as the
   * CSI spec has the CO do; any other answer is returned or thrown at once.
   */
  async callRetryingAborted(
    service: ServiceName,
    method: string,
    request: object,
    timeoutMs = 120_000,
  ): Promise<Reply> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await this.call(service, method, request);
      } catch (error) {
        if ((error as ServiceError).code !== status.ABORTED || Date.now() > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
  }

  /** Asserts the call fails with `code` and returns the error message. */
  async expectCode(
    service: ServiceName,
    method: string,
    request: object,
    code: keyof typeof status,
  ): Promise<string> {
    try {
      const reply: unknown = await this.call(service, method, request);
      assert.fail(`${method} answered ${JSON.stringify(reply)}, expected ${code}`);
    } catch (error) {
      if (error instanceof assert.AssertionError) throw error;
      const serviceError = error as ServiceError;
      assert.equal(status[serviceError.code], code, `${method}: ${serviceError.message}`);
      return serviceError.details;
    }
  }

  /**
   * Until the node agent has reported this node's free space: in a running cluster it has long
   * done so, and the controller places volumes without a topology and answers GetCapacity by it.
   */
  private async waitForCapacityReport(): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const data = this.kube!.object('/configmaps', CAPACITY_CONFIGMAP, HARNESS_NAMESPACE)?.data;
      if (data && typeof data === 'object' && this.options.nodeId in data) return;
      if (Date.now() > deadline) throw new Error('the node agent did not report its capacity');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  private async waitForSocket(): Promise<void> {
    const deadline = Date.now() + 180_000;
    while (!existsSync(this.socketPath)) {
      const child = this.child!;
      if (child.exitCode !== null) throw new Error(`plugin exited with ${child.exitCode}`);
      if (Date.now() > deadline) throw new Error('plugin socket did not appear');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/**
 * Runs `start` with KUBECONFIG naming `path` (the plugin reads it once, as it connects), then puts
 * the variable back as it was.
 */
async function withKubeconfig<T>(path: string | undefined, start: () => Promise<T>): Promise<T> {
  if (path === undefined) return start();
  const before = process.env.KUBECONFIG;
  process.env.KUBECONFIG = path;
  try {
    return await start();
  } finally {
    if (before === undefined) delete process.env.KUBECONFIG;
    else process.env.KUBECONFIG = before;
  }
}

export const GiB = 2 ** 30;
export const MiB = 2 ** 20;

export function mountCapability(
  fsType = 'ext4',
  mode = 'SINGLE_NODE_WRITER',
  mountFlags: string[] = [],
): object {
  return { mount: { fs_type: fsType, mount_flags: mountFlags }, access_mode: { mode } };
}

export function blockCapability(mode = 'SINGLE_NODE_WRITER'): object {
  return { block: {}, access_mode: { mode } };
}
