// Runs the containers of a rendered pod template with runc, as kubelet and a CRI runtime would on
// this node: a sandbox per pod (its network namespace or the host's, its directory under kubelet's
// pods/ with emptyDirs, the ServiceAccount token volume, hosts/hostname/resolv.conf, shm), and per
// container an OCI bundle (config.json from pod-oci-spec.ts, a fresh overlay root filesystem on the
// unpacked image) started, signalled, exec'd into and deleted through runc.
import { ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  rmdirSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { criImageReference } from './image-reference';
import { OciImage } from './oci-image';
import { PodNetwork } from './pod-network';
import { OciSpec, PodFacts, SandboxFiles, ociSpec } from './pod-oci-spec';
import { kubernetesServiceEnv } from './kubelet-env';
import { Fields, booleanOf, fieldsOf, numberOf, stringOf } from './spec-fields';

/** The node: its image store (one unpacked image), the API server pods reach, kubelet's root. */
export interface NodeRuntimeOptions {
  /** Scratch directory for runc's state, bundles and the unpacked image. */
  scratch: string;
  /** kubelet's root directory (pods/<uid>/ are made under it). */
  kubeletDir: string;
  nodeName: string;
  image: OciImage;
  network: PodNetwork;
  /** The kubernetes Service (host is the network's service address) and its CA certificate. */
  apiServer: { port: number; caCert: string };
}

export interface PodIdentity {
  name: string;
  namespace: string;
  uid: string;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class NodeRuntime {
  readonly runcRoot: string;
  readonly imageRootfs: string;

  private constructor(readonly options: NodeRuntimeOptions) {
    this.runcRoot = join(options.scratch, 'runc');
    this.imageRootfs = join(options.scratch, 'image', 'rootfs');
  }

  /** Unpacks the image once (the node's image store). */
  static create(options: NodeRuntimeOptions): NodeRuntime {
    const runtime = new NodeRuntime(options);
    mkdirSync(runtime.runcRoot, { recursive: true });
    options.image.unpack(runtime.imageRootfs, join(options.scratch, 'image'));
    return runtime;
  }

  /** The image name a container must give to run here. */
  get imageName(): string {
    return this.options.image.refName;
  }

  runc(args: string[], timeoutMs = 120_000): Promise<ExecResult> {
    return new Promise((resolve) => {
      execFile(
        'runc',
        ['--root', this.runcRoot, ...args],
        { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 },
        (error, stdout, stderr) => {
          const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
          resolve({ code, stdout, stderr });
        },
      );
    });
  }
}

export class PodSandbox {
  private readonly containers = new Map<string, RuncContainer>();

  private constructor(
    readonly runtime: NodeRuntime,
    readonly template: Fields,
    readonly facts: PodFacts,
    readonly files: SandboxFiles,
    private readonly removeNetwork: () => void,
    /** persistentVolumeClaim volumes: claim name → published path. */
    readonly claims: Record<string, string>,
  ) {}

  /** Makes the pod's sandbox: network, directories, kubelet's files. No container runs yet. */
  static create(
    runtime: NodeRuntime,
    template: Fields,
    identity: PodIdentity,
    claims: Record<string, string> = {},
  ): PodSandbox {
    const spec = fieldsOf(template.spec, 'spec');
    const hostNetwork = booleanOf(spec.hostNetwork, 'spec.hostNetwork') ?? false;
    const podDir = join(runtime.options.kubeletDir, 'pods', identity.uid);
    mkdirSync(podDir, { recursive: true });
    const network = hostNetwork
      ? { netns: null, podIP: '127.0.0.1', remove: () => undefined }
      : runtime.options.network.addPod(identity.uid);
    const etc = join(podDir, 'etc');
    mkdirSync(etc, { recursive: true });
    const hostname = hostNetwork ? readFileSync('/proc/sys/kernel/hostname', 'utf8').trim() : identity.name;
    const files: SandboxFiles = {
      netns: network.netns,
      podDir,
      serviceAccountDir: serviceAccountVolume(runtime, spec, podDir, identity.namespace),
      etcHosts: writeFile(
        join(etc, 'hosts'),
        hostNetwork && existsSync('/etc/hosts')
          ? readFileSync('/etc/hosts', 'utf8')
          : `127.0.0.1\tlocalhost\n::1\tlocalhost\n${network.podIP}\t${identity.name}\n`,
      ),
      etcHostname: writeFile(join(etc, 'hostname'), `${hostname}\n`),
      resolvConf: writeFile(join(etc, 'resolv.conf'), resolvConf(spec, hostNetwork, identity.namespace)),
      shm: join(podDir, 'shm'),
    };
    mkdirSync(files.shm, { recursive: true });
    execFileSync('mount', [
      '-t',
      'tmpfs',
      '-o',
      'nosuid,nodev,noexec,mode=1777,size=65536k',
      'shm',
      files.shm,
    ]);
    const facts: PodFacts = {
      ...identity,
      nodeName: runtime.options.nodeName,
      hostIP: '127.0.0.1',
      podIP: network.podIP,
    };
    return new PodSandbox(runtime, template, facts, files, network.remove, claims);
  }

  /** The config.json of one of the pod's containers, on a fresh root filesystem at `rootfs`. */
  spec(name: string, rootfs: string): OciSpec {
    const { runtime } = this;
    return ociSpec({
      template: this.template,
      container: name,
      pod: this.facts,
      sandbox: this.files,
      image: runtime.options.image.config,
      rootfs,
      serviceEnv: kubernetesServiceEnv(runtime.options.network.serviceIP, runtime.options.apiServer.port),
      claims: this.claims,
      cgroupsPath: `/vduse-csi-pods/pod${this.facts.uid}/${name}`,
    });
  }

  /** Runs each init container to completion, in order, as kubelet does before the others start. */
  async runInitContainers(): Promise<void> {
    const spec = fieldsOf(this.template.spec, 'spec');
    for (const init of (spec.initContainers as Fields[] | undefined) ?? []) {
      const name = String(init.name);
      const container = this.container(name);
      const code = await container.runToCompletion();
      if (code !== 0)
        throw new Error(
          `init container ${name} exited with ${code}:\n${container.log()}\n${container.terminationMessage()}`,
        );
      await container.delete();
    }
  }

  /** The pod's container `name` (made on first use; not started). */
  container(name: string): RuncContainer {
    let container = this.containers.get(name);
    if (!container) {
      const spec = fieldsOf(this.template.spec, 'spec');
      const all = [
        ...((spec.initContainers as Fields[] | undefined) ?? []),
        ...(spec.containers as Fields[]),
      ];
      const image = stringOf(all.find((entry) => entry.name === name)?.image, `container ${name}.image`);
      // The CRI looks the image up by its normalised reference; the store names it as its archive does.
      if (image === undefined || criImageReference(image) !== this.runtime.imageName)
        throw new Error(
          `container ${name}: image ${image} is not on this node (only ${this.runtime.imageName})`,
        );
      container = new RuncContainer(this, name);
      this.containers.set(name, container);
    }
    return container;
  }

  /** The pod's grace period: SIGTERM, then SIGKILL after terminationGracePeriodSeconds. */
  get gracePeriodMs(): number {
    const spec = fieldsOf(this.template.spec, 'spec');
    return (numberOf(spec.terminationGracePeriodSeconds, 'terminationGracePeriodSeconds') ?? 30) * 1000;
  }

  /** Stops every container (graceful, all at once as kubelet does), removes them and the sandbox. */
  async destroy(): Promise<void> {
    await Promise.all([...this.containers.values()].map((container) => container.stop(this.gracePeriodMs)));
    for (const container of this.containers.values()) await container.delete();
    execFileSync('umount', [this.files.shm]);
    this.removeNetwork();
    rmSync(this.files.podDir, { recursive: true, force: true });
    // runc removed each container's cgroup; the pod's own is left empty (cgroupfs: rmdir only).
    const cgroup = `/sys/fs/cgroup/vduse-csi-pods/pod${this.facts.uid}`;
    if (existsSync(cgroup)) rmdirSync(cgroup);
  }
}

/** One container of a pod: an OCI bundle, run by runc under the id <pod uid>-<name>. */
export class RuncContainer {
  readonly id: string;
  readonly bundle: string;
  private child: ChildProcess | undefined;

  constructor(
    private readonly pod: PodSandbox,
    readonly name: string,
  ) {
    this.id = `${pod.facts.uid.slice(0, 18)}-${name}`;
    this.bundle = join(pod.runtime.options.scratch, 'bundles', this.id);
  }

  get logPath(): string {
    return join(this.bundle, 'container.log');
  }

  log(): string {
    return existsSync(this.logPath) ? readFileSync(this.logPath, 'utf8') : '';
  }

  terminationMessage(): string {
    const path = join(this.pod.files.podDir, 'containers', this.name, 'termination-log');
    return existsSync(path) ? readFileSync(path, 'utf8') : '';
  }

  /** The config.json written for the current run (after start). */
  get spec(): OciSpec {
    return JSON.parse(readFileSync(join(this.bundle, 'config.json'), 'utf8')) as OciSpec;
  }

  /** Writes the bundle: a fresh overlay root filesystem and config.json. */
  private prepare(): void {
    const rootfs = join(this.bundle, 'rootfs');
    for (const directory of ['upper', 'work', 'rootfs'].map((name) => join(this.bundle, name)))
      mkdirSync(directory, { recursive: true });
    const lower = this.pod.runtime.imageRootfs;
    execFileSync('mount', [
      '-t',
      'overlay',
      'overlay',
      '-o',
      `lowerdir=${lower},upperdir=${join(this.bundle, 'upper')},workdir=${join(this.bundle, 'work')}`,
      rootfs,
    ]);
    writeFileSync(
      join(this.bundle, 'config.json'),
      JSON.stringify(this.pod.spec(this.name, rootfs), null, 2),
    );
  }

  /** Starts the container in the background (as kubelet starts a pod's containers). */
  async start(): Promise<void> {
    this.prepare();
    const log = openSync(this.logPath, 'a');
    try {
      await new Promise<void>((resolve, reject) => {
        const child = spawn(
          'runc',
          ['--root', this.pod.runtime.runcRoot, 'run', '-d', '--bundle', this.bundle, this.id],
          {
            stdio: ['ignore', log, log],
          },
        );
        child.once('error', reject);
        child.once('exit', (code) =>
          code === 0
            ? resolve()
            : reject(new Error(`runc run ${this.name} failed (${code}):\n${this.log()}`)),
        );
      });
    } finally {
      closeSync(log);
    }
  }

  /** Runs the container in the foreground; resolves with its exit code (an init container). */
  async runToCompletion(): Promise<number> {
    this.prepare();
    const log = openSync(this.logPath, 'a');
    try {
      return await new Promise<number>((resolve, reject) => {
        this.child = spawn(
          'runc',
          ['--root', this.pod.runtime.runcRoot, 'run', '--bundle', this.bundle, this.id],
          {
            stdio: ['ignore', log, log],
          },
        );
        this.child.once('error', reject);
        this.child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : -1)));
      });
    } finally {
      closeSync(log);
      this.child = undefined;
    }
  }

  /** runc's status: created, running, stopped, or null when runc has no such container. */
  async status(): Promise<string | null> {
    const state = await this.pod.runtime.runc(['state', this.id]);
    if (state.code !== 0) return null;
    return (JSON.parse(state.stdout) as { status: string }).status;
  }

  /** The container's init process as the node sees it (for /proc/<pid>/root: the container's view). */
  async pid(): Promise<number> {
    const state = await this.pod.runtime.runc(['state', this.id]);
    if (state.code !== 0) throw new Error(`container ${this.name} does not exist: ${state.stderr}`);
    return (JSON.parse(state.stdout) as { pid: number }).pid;
  }

  /** Sends a signal to the container's init process (its PID namespace dies with it). */
  async kill(signal: 'KILL' | 'TERM'): Promise<void> {
    const result = await this.pod.runtime.runc(['kill', this.id, signal]);
    if (result.code !== 0 && (await this.status()) === 'running')
      throw new Error(`runc kill ${this.name} ${signal}: ${result.stderr}`);
  }

  async waitStopped(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const status = await this.status();
      if (status === 'stopped' || status === null) return;
      if (Date.now() > deadline) throw new Error(`container ${this.name} did not stop in ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  /** SIGTERM, then SIGKILL once the grace period is over. */
  async stop(gracePeriodMs: number): Promise<void> {
    if ((await this.status()) !== 'running') return;
    await this.kill('TERM');
    try {
      await this.waitStopped(gracePeriodMs);
    } catch {
      await this.kill('KILL');
      await this.waitStopped(60_000);
    }
  }

  /** Removes the stopped container and its root filesystem (a restart starts from the image again). */
  async delete(): Promise<void> {
    if ((await this.status()) !== null) {
      const result = await this.pod.runtime.runc(['delete', '--force', this.id]);
      if (result.code !== 0) throw new Error(`runc delete ${this.name}: ${result.stderr}`);
    }
    const rootfs = join(this.bundle, 'rootfs');
    if (existsSync(rootfs) && readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${rootfs} `))
      execFileSync('umount', [rootfs]);
    for (const name of ['upper', 'work', 'rootfs'])
      rmSync(join(this.bundle, name), { recursive: true, force: true });
  }

  /** Runs a command inside the running container (as kubelet runs exec probes). */
  exec(args: string[], timeoutMs = 120_000): Promise<ExecResult> {
    return this.pod.runtime.runc(['exec', this.id, ...args], timeoutMs);
  }
}

function writeFile(path: string, content: string): string {
  writeFileSync(path, content, { mode: 0o644 });
  return path;
}

/** kubelet's resolv.conf by dnsPolicy (cluster DNS at the conventional 10.96.0.10). */
function resolvConf(spec: Fields, hostNetwork: boolean, namespace: string): string {
  const policy = stringOf(spec.dnsPolicy, 'spec.dnsPolicy') ?? 'ClusterFirst';
  const host = existsSync('/etc/resolv.conf') ? readFileSync('/etc/resolv.conf', 'utf8') : '';
  if (policy === 'Default' || (policy === 'ClusterFirst' && hostNetwork)) return host;
  if (policy === 'ClusterFirst' || policy === 'ClusterFirstWithHostNet')
    return `nameserver 10.96.0.10\nsearch ${namespace}.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n`;
  throw new Error(`spec.dnsPolicy ${policy} is not supported`);
}

/**
 * The projected volume the ServiceAccount admission adds unless automountServiceAccountToken is
 * false: a token, the cluster's CA certificate and the namespace.
 */
function serviceAccountVolume(
  runtime: NodeRuntime,
  spec: Fields,
  podDir: string,
  namespace: string,
): string | null {
  if (booleanOf(spec.automountServiceAccountToken, 'spec.automountServiceAccountToken') === false)
    return null;
  const account = stringOf(spec.serviceAccountName, 'spec.serviceAccountName') ?? 'default';
  const directory = join(podDir, 'volumes', 'kubernetes.io~projected', 'kube-api-access');
  mkdirSync(directory, { recursive: true });
  writeFile(join(directory, 'token'), `token-of-${namespace}-${account}`);
  writeFile(join(directory, 'ca.crt'), runtime.options.apiServer.caCert);
  writeFile(join(directory, 'namespace'), namespace);
  return directory;
}
