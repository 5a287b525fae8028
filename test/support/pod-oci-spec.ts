// One container of a rendered pod template as an OCI runtime config (config.json), the way kubelet
// and containerd's CRI plugin make it: process (command/args against the image, env, user,
// capabilities), namespaces (the pod's network or the host's), mounts (containerd's defaults,
// kubelet's files, the pod's volumes with their propagation), privileged mode, devices, cgroup
// limits, seccomp. Any field of the spec this cannot express makes it throw.
import {
  chmodSync,
  chownSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { parseMountInfo } from '../../src/node/mountinfo';
import { parseQuantity } from './kube-quantity';
import { FieldValues, containerArgs, containerEnv, expand } from './kubelet-env';
import { ImageConfig } from './oci-image';
import {
  Fields,
  booleanOf,
  fieldsOf,
  listOf,
  numberOf,
  onlyKnown,
  optionalFields,
  requiredString,
  stringOf,
  stringsOf,
} from './spec-fields';

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options: string[];
}

interface OciDevice {
  path: string;
  type: 'c' | 'b';
  major: number;
  minor: number;
  fileMode: number;
  uid: number;
  gid: number;
}

interface DeviceRule {
  allow: boolean;
  access: string;
  type?: 'c' | 'b';
  major?: number;
  minor?: number;
}

export interface OciSpec {
  ociVersion: string;
  process: {
    terminal: boolean;
    user: { uid: number; gid: number; additionalGids: number[] };
    args: string[];
    env: string[];
    cwd: string;
    capabilities: Record<'bounding' | 'effective' | 'permitted', string[]>;
    noNewPrivileges: boolean;
  };
  root: { path: string; readonly: boolean };
  hostname?: string;
  mounts: OciMount[];
  linux: {
    namespaces: { type: string; path?: string }[];
    rootfsPropagation?: string;
    cgroupsPath: string;
    resources: {
      devices: DeviceRule[];
      memory?: { limit: number };
      cpu?: { shares?: number; quota?: number; period?: number };
    };
    devices: OciDevice[];
    maskedPaths: string[];
    readonlyPaths: string[];
    seccomp?: object;
  };
}

/** What kubelet knows of the pod (the downward API's values). */
export interface PodFacts {
  name: string;
  namespace: string;
  uid: string;
  nodeName: string;
  hostIP: string;
  podIP: string;
}

/** What the pod's sandbox provides its containers (see pod-runtime.ts). */
export interface SandboxFiles {
  /** The pod's network namespace, or null for the host's (hostNetwork). */
  netns: string | null;
  /** The pod's directory under kubelet's pods/: emptyDirs, termination logs. */
  podDir: string;
  /** The ServiceAccount token volume (token, ca.crt, namespace), when the pod mounts one. */
  serviceAccountDir: string | null;
  etcHosts: string;
  etcHostname: string;
  resolvConf: string;
  shm: string;
}

export interface ContainerRequest {
  /** The pod template: { metadata, spec } of a DaemonSet's or Deployment's spec.template. */
  template: Fields;
  /** A name among spec.containers or spec.initContainers. */
  container: string;
  pod: PodFacts;
  sandbox: SandboxFiles;
  image: ImageConfig;
  /** The container's root filesystem (its image's files and the container's own changes). */
  rootfs: string;
  /** What kubelet adds to every container (the kubernetes Service's variables). */
  serviceEnv: Record<string, string>;
  /** persistentVolumeClaim volumes: claim name → the published path (NodePublishVolume's target). */
  claims: Record<string, string>;
  cgroupsPath: string;
}

const POD_FIELDS = [
  'containers',
  'initContainers',
  'volumes',
  'hostNetwork',
  'securityContext',
  'serviceAccountName',
  'automountServiceAccountToken',
  'terminationGracePeriodSeconds',
  'dnsPolicy',
  // Scheduling and pulling only: no effect on how a container runs on its node.
  'nodeSelector',
  'tolerations',
  'affinity',
  'priorityClassName',
  'imagePullSecrets',
];
const CONTAINER_FIELDS = [
  'name',
  'image',
  'imagePullPolicy',
  'command',
  'args',
  'env',
  'workingDir',
  'securityContext',
  'resources',
  'volumeMounts',
  'volumeDevices',
  'terminationMessagePath',
  'terminationMessagePolicy',
  // Kubelet behaviour, not the runtime's: run by pod-probes.ts, ports checked there.
  'ports',
  'livenessProbe',
  'readinessProbe',
  'startupProbe',
];
const SECURITY_FIELDS = [
  'privileged',
  'runAsUser',
  'runAsGroup',
  'runAsNonRoot',
  'allowPrivilegeEscalation',
  'readOnlyRootFilesystem',
  'capabilities',
  'seccompProfile',
];
const POD_SECURITY_FIELDS = [
  'runAsUser',
  'runAsGroup',
  'runAsNonRoot',
  'fsGroup',
  'supplementalGroups',
  'seccompProfile',
];

/** containerd's default capabilities of a container that is not privileged. */
const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];
/** Every capability of Linux 6.x (what a privileged container gets). */
const ALL_CAPABILITIES = [
  ...['CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID'],
  ...['SETPCAP', 'LINUX_IMMUTABLE', 'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_ADMIN', 'NET_RAW'],
  ...['IPC_LOCK', 'IPC_OWNER', 'SYS_MODULE', 'SYS_RAWIO', 'SYS_CHROOT', 'SYS_PTRACE', 'SYS_PACCT'],
  ...['SYS_ADMIN', 'SYS_BOOT', 'SYS_NICE', 'SYS_RESOURCE', 'SYS_TIME', 'SYS_TTY_CONFIG', 'MKNOD'],
  ...['LEASE', 'AUDIT_WRITE', 'AUDIT_CONTROL', 'SETFCAP', 'MAC_OVERRIDE', 'MAC_ADMIN', 'SYSLOG'],
  ...['WAKE_ALARM', 'BLOCK_SUSPEND', 'AUDIT_READ', 'PERFMON', 'BPF', 'CHECKPOINT_RESTORE'],
].map((name) => `CAP_${name}`);

/** containerd's masked and read-only paths of a container that is not privileged. */
const MASKED_PATHS = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
];
const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/**
 * RuntimeDefault, approximated: containerd's profile allows a list of system calls; this denies
 * (EPERM) the notable ones outside that list for a container without CAP_SYS_ADMIN and friends.
 */
const RUNTIME_DEFAULT_DENIED = [
  ...['acct', 'add_key', 'bpf', 'clock_adjtime', 'clock_settime', 'create_module', 'delete_module'],
  ...['finit_module', 'fsconfig', 'fsmount', 'fsopen', 'fspick', 'get_kernel_syms', 'init_module'],
  ...['io_uring_enter', 'io_uring_register', 'io_uring_setup', 'ioperm', 'iopl', 'kexec_file_load'],
  ...['kexec_load', 'keyctl', 'lookup_dcookie', 'mount', 'mount_setattr', 'move_mount', 'nfsservctl'],
  ...['open_by_handle_at', 'open_tree', 'perf_event_open', 'pivot_root', 'query_module', 'quotactl'],
  ...['reboot', 'request_key', 'setdomainname', 'sethostname', 'setns', 'settimeofday', 'swapoff'],
  ...['swapon', 'sysfs', '_sysctl', 'umount2', 'unshare', 'uselib', 'userfaultfd', 'ustat', 'vm86'],
];

/** Directories of /dev that containerd's host device list skips. */
const SKIPPED_DEVICE_DIRS = ['pts', 'shm', 'fd', 'mqueue', '.lxc', '.lxd-mounts', '.udev'];

/** The container's config.json. Prepares host paths as kubelet does (hostPath types, subpaths). */
export function ociSpec(request: ContainerRequest): OciSpec {
  const podSpec = fieldsOf(request.template.spec, 'spec');
  onlyKnown(podSpec, POD_FIELDS, 'spec');
  const container = findContainer(podSpec, request.container);
  const where = `container ${request.container}`;
  onlyKnown(container, CONTAINER_FIELDS, where);
  const hostNetwork = booleanOf(podSpec.hostNetwork, 'spec.hostNetwork') ?? false;
  const podSecurity = optionalFields(podSpec.securityContext, 'spec.securityContext') ?? {};
  onlyKnown(podSecurity, POD_SECURITY_FIELDS, 'spec.securityContext');
  const security = optionalFields(container.securityContext, `${where}.securityContext`) ?? {};
  onlyKnown(security, SECURITY_FIELDS, `${where}.securityContext`);
  const privileged = booleanOf(security.privileged, `${where}.securityContext.privileged`) ?? false;

  const env = containerEnv(container, fieldValues(request.pod, podSpec), request.serviceEnv, where);
  const args = containerArgs(container, request.image, env, where);
  const processEnv = new Map(request.image.env.map((entry) => splitEnv(entry)));
  processEnv.set(
    'HOSTNAME',
    hostNetwork ? readFileSync('/proc/sys/kernel/hostname', 'utf8').trim() : request.pod.name,
  );
  for (const [name, value] of env) processEnv.set(name, value);

  const volumes = podVolumes(podSpec, request);
  const mounts = containerMounts(container, volumes, env, privileged, request, where);
  const devices = volumeDevices(container, volumes, where);
  const hostDevices = privileged ? listHostDevices('/dev') : [];
  const capabilities = privileged ? ALL_CAPABILITIES : capabilitiesOf(security, where);
  const seccomp =
    stringOf(
      optionalFields(security.seccompProfile ?? podSecurity.seccompProfile, 'seccompProfile')?.type,
      `${where} seccompProfile.type`,
    ) ?? 'Unconfined';
  if (seccomp !== 'Unconfined' && seccomp !== 'RuntimeDefault')
    throw new Error(`${where}: seccompProfile ${seccomp} is not supported`);
  const allowEscalation = booleanOf(security.allowPrivilegeEscalation, `${where} allowPrivilegeEscalation`);

  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: userOf(security, podSecurity, request.image, request.rootfs, where),
      args,
      env: [...processEnv].map(([name, value]) => `${name}=${value}`),
      cwd: stringOf(container.workingDir, `${where}.workingDir`) ?? (request.image.workingDir || '/'),
      capabilities: { bounding: capabilities, effective: capabilities, permitted: capabilities },
      noNewPrivileges: allowEscalation === false,
    },
    root: {
      path: request.rootfs,
      readonly: booleanOf(security.readOnlyRootFilesystem, `${where} readOnlyRootFilesystem`) ?? false,
    },
    ...(hostNetwork ? {} : { hostname: request.pod.name }),
    mounts: mounts.list,
    linux: {
      namespaces: [
        { type: 'pid' },
        { type: 'ipc' },
        { type: 'mount' },
        { type: 'cgroup' },
        ...(hostNetwork ? [] : [{ type: 'uts' }, { type: 'network', path: request.sandbox.netns! }]),
      ],
      ...(mounts.rootfsPropagation ? { rootfsPropagation: mounts.rootfsPropagation } : {}),
      cgroupsPath: request.cgroupsPath,
      resources: {
        devices: [
          { allow: privileged, access: 'rwm' },
          ...devices.map(({ type, major, minor }) => ({ allow: true, access: 'rwm', type, major, minor })),
        ],
        ...resourcesOf(container, where),
      },
      devices: [...hostDevices, ...devices],
      maskedPaths: privileged ? [] : MASKED_PATHS,
      readonlyPaths: privileged ? [] : READONLY_PATHS,
      ...(privileged || seccomp === 'Unconfined' ? {} : { seccomp: runtimeDefaultSeccomp() }),
    },
  };
}

/** The pod template of a DaemonSet, Deployment (or the spec of a Pod) of a render. */
export function podTemplateOf(object: { kind: string; spec?: unknown }): Fields {
  const spec = fieldsOf(object.spec, `${object.kind}.spec`);
  if (object.kind === 'Pod') return { metadata: {}, spec };
  if (!['DaemonSet', 'Deployment', 'StatefulSet'].includes(object.kind))
    throw new Error(`${object.kind} has no pod template`);
  return fieldsOf(spec.template, `${object.kind}.spec.template`);
}

/** Every container of the pod (init containers first), by name. */
export function podContainers(template: Fields): { init: Fields[]; main: Fields[] } {
  const spec = fieldsOf(template.spec, 'spec');
  return {
    init: listOf(spec.initContainers, 'spec.initContainers'),
    main: listOf(spec.containers, 'spec.containers'),
  };
}

function findContainer(podSpec: Fields, name: string): Fields {
  const all = [
    ...listOf(podSpec.initContainers, 'spec.initContainers'),
    ...listOf(podSpec.containers, 'spec.containers'),
  ];
  const found = all.find((container) => container.name === name);
  if (!found) throw new Error(`the pod has no container ${name}`);
  return found;
}

function fieldValues(pod: PodFacts, podSpec: Fields): FieldValues {
  return {
    'metadata.name': pod.name,
    'metadata.namespace': pod.namespace,
    'metadata.uid': pod.uid,
    'spec.nodeName': pod.nodeName,
    'spec.serviceAccountName': stringOf(podSpec.serviceAccountName, 'spec.serviceAccountName') ?? 'default',
    'status.hostIP': pod.hostIP,
    'status.podIP': pod.podIP,
  };
}

function splitEnv(entry: string): [string, string] {
  const at = entry.indexOf('=');
  return at < 0 ? [entry, ''] : [entry.slice(0, at), entry.slice(at + 1)];
}

type Volume =
  | { kind: 'host'; path: string; type: string }
  | { kind: 'emptyDir'; path: string }
  | { kind: 'projected'; path: string }
  | { kind: 'claim'; path: string; readOnly: boolean };

/** The pod's volumes by name, with the ServiceAccount token volume the API server's admission adds. */
function podVolumes(podSpec: Fields, request: ContainerRequest): Map<string, Volume> {
  const volumes = new Map<string, Volume>();
  for (const [index, volume] of listOf(podSpec.volumes, 'spec.volumes').entries()) {
    const where = `spec.volumes[${index}]`;
    const name = requiredString(volume.name, `${where}.name`);
    const source = Object.keys(volume).filter((field) => field !== 'name');
    if (source.length !== 1)
      throw new Error(`${where}: one volume source expected, got ${source.join(', ')}`);
    if (volume.hostPath !== undefined) {
      const hostPath = fieldsOf(volume.hostPath, `${where}.hostPath`);
      onlyKnown(hostPath, ['path', 'type'], `${where}.hostPath`);
      const path = requiredString(hostPath.path, `${where}.hostPath.path`);
      volumes.set(name, {
        kind: 'host',
        path,
        type: stringOf(hostPath.type, `${where}.hostPath.type`) ?? '',
      });
    } else if (volume.emptyDir !== undefined) {
      const emptyDir = optionalFields(volume.emptyDir, `${where}.emptyDir`) ?? {};
      onlyKnown(emptyDir, ['sizeLimit'], `${where}.emptyDir`);
      const path = join(request.sandbox.podDir, 'volumes', 'kubernetes.io~empty-dir', name);
      volumes.set(name, { kind: 'emptyDir', path });
    } else if (volume.persistentVolumeClaim !== undefined) {
      const claim = fieldsOf(volume.persistentVolumeClaim, `${where}.persistentVolumeClaim`);
      onlyKnown(claim, ['claimName', 'readOnly'], `${where}.persistentVolumeClaim`);
      const claimName = requiredString(claim.claimName, `${where}.persistentVolumeClaim.claimName`);
      const path = request.claims[claimName];
      if (path === undefined) throw new Error(`${where}: claim ${claimName} is not published`);
      volumes.set(name, {
        kind: 'claim',
        path,
        readOnly: booleanOf(claim.readOnly, `${where} readOnly`) ?? false,
      });
    } else throw new Error(`${where}: volume source ${source[0]} is not supported`);
  }
  if (request.sandbox.serviceAccountDir)
    volumes.set(SERVICE_ACCOUNT_VOLUME, { kind: 'projected', path: request.sandbox.serviceAccountDir });
  return volumes;
}

const SERVICE_ACCOUNT_VOLUME = 'kube-api-access';
const SERVICE_ACCOUNT_PATH = '/var/run/secrets/kubernetes.io/serviceaccount';

/** kubelet's emptyDir: mode 0777, and with an fsGroup owned by that group with the setgid bit. */
function makeEmptyDir(path: string, template: Fields): void {
  mkdirSync(path, { recursive: true });
  const podSecurity = optionalFields(fieldsOf(template.spec, 'spec').securityContext, 'spec.securityContext');
  const fsGroup = numberOf(podSecurity?.fsGroup, 'spec.securityContext.fsGroup');
  if (fsGroup === undefined) chmodSync(path, 0o777);
  else {
    chownSync(path, 0, fsGroup);
    chmodSync(path, 0o2777);
  }
}

/** kubelet's checks of a hostPath volume's type (and DirectoryOrCreate/FileOrCreate's creation). */
function checkHostPath(path: string, type: string, where: string): void {
  const kind = (): string | null => {
    try {
      const stat = statSync(path);
      if (stat.isDirectory()) return 'Directory';
      if (stat.isFile()) return 'File';
      if (stat.isSocket()) return 'Socket';
      if (stat.isCharacterDevice()) return 'CharDevice';
      if (stat.isBlockDevice()) return 'BlockDevice';
      return 'other';
    } catch {
      return null;
    }
  };
  if (type === '') return;
  if (type === 'DirectoryOrCreate' && kind() === null) mkdirSync(path, { recursive: true, mode: 0o755 });
  if (type === 'FileOrCreate' && kind() === null) writeFileSync(path, '', { mode: 0o644 });
  const wanted = type.replace(/OrCreate$/, '');
  if (!['Directory', 'File', 'Socket', 'CharDevice', 'BlockDevice'].includes(wanted))
    throw new Error(`${where}: hostPath type ${type} is not supported`);
  if (kind() !== wanted) throw new Error(`${where}: hostPath type check failed: ${path} is not a ${wanted}`);
}

interface Mounts {
  list: OciMount[];
  rootfsPropagation?: string;
}

function containerMounts(
  container: Fields,
  volumes: Map<string, Volume>,
  env: Map<string, string>,
  privileged: boolean,
  request: ContainerRequest,
  where: string,
): Mounts {
  const mounts: OciMount[] = [];
  let rootfsPropagation: string | undefined;
  const mountList = listOf(container.volumeMounts, `${where}.volumeMounts`);
  if (request.sandbox.serviceAccountDir)
    mountList.push({ name: SERVICE_ACCOUNT_VOLUME, mountPath: SERVICE_ACCOUNT_PATH, readOnly: true });
  for (const [index, mount] of mountList.entries()) {
    const at = `${where}.volumeMounts[${index}]`;
    onlyKnown(mount, ['name', 'mountPath', 'readOnly', 'subPath', 'subPathExpr', 'mountPropagation'], at);
    const name = requiredString(mount.name, `${at}.name`);
    const volume = volumes.get(name);
    if (!volume) throw new Error(`${at}: no volume ${name}`);
    const destination = requiredString(mount.mountPath, `${at}.mountPath`);
    if (!isAbsolute(destination)) throw new Error(`${at}: mountPath ${destination} is not absolute`);
    if (volume.kind === 'host') checkHostPath(volume.path, volume.type, `spec.volumes ${name}`);
    if (volume.kind === 'emptyDir') makeEmptyDir(volume.path, request.template);
    let source = volume.path;
    const subPath = subPathOf(mount, env, at);
    if (subPath !== undefined) {
      source = join(volume.path, subPath);
      mkdirSync(source, { recursive: true, mode: 0o750 });
    }
    const options = ['rbind'];
    const propagation = stringOf(mount.mountPropagation, `${at}.mountPropagation`) ?? 'None';
    if (propagation === 'Bidirectional') {
      if (!privileged) throw new Error(`${at}: Bidirectional propagation needs a privileged container`);
      requirePropagation(source, ['shared:'], at);
      options.push('rshared');
      rootfsPropagation = 'rshared';
    } else if (propagation === 'HostToContainer') {
      requirePropagation(source, ['shared:', 'master:'], at);
      options.push('rslave');
      if (rootfsPropagation !== 'rshared') rootfsPropagation = 'rslave';
    } else if (propagation === 'None') options.push('rprivate');
    else throw new Error(`${at}: mountPropagation ${propagation} is not supported`);
    const readOnly = booleanOf(mount.readOnly, `${at}.readOnly`) ?? false;
    if (readOnly || (volume.kind === 'claim' && volume.readOnly)) options.push('ro');
    mounts.push({ destination, type: 'bind', source, options });
  }
  mounts.push(...kubeletFiles(container, request, where));
  // containerd: user mounts sorted by depth; its defaults kept unless a user mount replaces them
  // (a /dev or /sys mount replaces every default below it too).
  const destinations = new Set(mounts.map((mount) => mount.destination));
  const defaults = defaultMounts(privileged).filter(
    ({ destination }) =>
      !destinations.has(destination) &&
      !(destinations.has('/dev') && destination.startsWith('/dev/')) &&
      !(destinations.has('/sys') && destination.startsWith('/sys/')),
  );
  const depth = (mount: OciMount): number => mount.destination.split('/').filter(Boolean).length;
  const sorted = mounts.map((mount, order) => ({ mount, order }));
  sorted.sort((a, b) => depth(a.mount) - depth(b.mount) || a.order - b.order);
  return { list: [...defaults, ...sorted.map(({ mount }) => mount)], rootfsPropagation };
}

function subPathOf(mount: Fields, env: Map<string, string>, at: string): string | undefined {
  const subPath = stringOf(mount.subPath, `${at}.subPath`);
  const expression = stringOf(mount.subPathExpr, `${at}.subPathExpr`);
  if (subPath !== undefined && expression !== undefined) throw new Error(`${at}: subPath and subPathExpr`);
  const path = expression !== undefined ? expand(expression, (name) => env.get(name)) : subPath;
  if (path !== undefined && (isAbsolute(path) || path.split('/').includes('..') || path.includes('$(')))
    throw new Error(`${at}: bad subpath ${path}`);
  return path === '' ? undefined : path;
}

/** containerd refuses a propagated mount whose source is not on a shared (or slave) mount. */
function requirePropagation(source: string, tags: string[], at: string): void {
  const mounts = parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8'));
  const under = (mountPoint: string): boolean =>
    mountPoint === '/' || source === mountPoint || source.startsWith(`${mountPoint}/`);
  const holder = mounts.filter(({ mountPoint }) => under(mountPoint)).at(-1);
  if (!holder) throw new Error(`${at}: no mount holds ${source}`);
  if (!holder.optionalFields.some((field) => tags.some((tag) => field.startsWith(tag))))
    throw new Error(
      `${at}: path "${source}" is mounted on "${holder.mountPoint}" but it is not a ${tags.length > 1 ? 'shared or slave' : 'shared'} mount`,
    );
}

/** The files kubelet and containerd give every container: termination log, hosts, hostname, resolv.conf, shm. */
function kubeletFiles(container: Fields, request: ContainerRequest, where: string): OciMount[] {
  const terminationPath =
    stringOf(container.terminationMessagePath, `${where}.terminationMessagePath`) ?? '/dev/termination-log';
  const logDir = join(request.sandbox.podDir, 'containers', request.container);
  mkdirSync(logDir, { recursive: true });
  const log = join(logDir, 'termination-log');
  writeFileSync(log, '', { mode: 0o666 });
  const file = (destination: string, source: string, readOnly = false): OciMount => ({
    destination,
    type: 'bind',
    source,
    options: ['rbind', 'rprivate', ...(readOnly ? ['ro'] : [])],
  });
  return [
    file(terminationPath, log),
    file('/etc/hosts', request.sandbox.etcHosts),
    file('/etc/hostname', request.sandbox.etcHostname),
    file('/etc/resolv.conf', request.sandbox.resolvConf),
    file('/dev/shm', request.sandbox.shm),
  ];
}

function defaultMounts(privileged: boolean): OciMount[] {
  const readOnly = privileged ? [] : ['ro'];
  return [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    {
      destination: '/dev',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
    },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    {
      destination: '/sys',
      type: 'sysfs',
      source: 'sysfs',
      options: ['nosuid', 'noexec', 'nodev', ...readOnly],
    },
    {
      destination: '/sys/fs/cgroup',
      type: 'cgroup',
      source: 'cgroup',
      options: ['nosuid', 'noexec', 'nodev', 'relatime', ...readOnly],
    },
  ];
}

/** volumeDevices: the block device behind a published Block claim, as a device node in the container. */
function volumeDevices(container: Fields, volumes: Map<string, Volume>, where: string): OciDevice[] {
  return listOf(container.volumeDevices, `${where}.volumeDevices`).map((entry, index) => {
    const at = `${where}.volumeDevices[${index}]`;
    onlyKnown(entry, ['name', 'devicePath'], at);
    const volume = volumes.get(requiredString(entry.name, `${at}.name`));
    if (volume?.kind !== 'claim') throw new Error(`${at}: volumeDevices need a persistentVolumeClaim volume`);
    const stat = statSync(volume.path);
    if (!stat.isBlockDevice())
      throw new Error(`${at}: ${volume.path} is not a block device (the publish is not visible on the host)`);
    return {
      ...deviceNumbers(stat.rdev),
      path: requiredString(entry.devicePath, `${at}.devicePath`),
      type: 'b',
      fileMode: 0o660,
      uid: 0,
      gid: 0,
    };
  });
}

function deviceNumbers(rdev: number): { major: number; minor: number } {
  const high = Math.floor(rdev / 2 ** 32);
  return {
    major: ((rdev >>> 8) & 0xfff) | (high & ~0xfff),
    minor: (rdev & 0xff) | ((rdev >>> 12) & 0xfff00),
  };
}

/** containerd's WithHostDevices: every device node under /dev, for a privileged container. */
function listHostDevices(directory: string): OciDevice[] {
  const devices: OciDevice[] = [];
  for (const name of readdirSync(directory)) {
    const path = join(directory, name);
    const stat = lstatSync(path);
    if (stat.isDirectory()) {
      if (!SKIPPED_DEVICE_DIRS.includes(name)) devices.push(...listHostDevices(path));
    } else if (stat.isCharacterDevice() || stat.isBlockDevice()) {
      const type = stat.isBlockDevice() ? 'b' : 'c';
      devices.push({
        path,
        type,
        ...deviceNumbers(stat.rdev),
        fileMode: stat.mode & 0o7777,
        uid: stat.uid,
        gid: stat.gid,
      });
    }
  }
  return devices;
}

/** containerd's order: add ALL, drop ALL, then the single ones added and dropped. */
function capabilitiesOf(security: Fields, where: string): string[] {
  const capabilities = optionalFields(security.capabilities, `${where} capabilities`) ?? {};
  onlyKnown(capabilities, ['add', 'drop'], `${where} capabilities`);
  const name = (cap: string): string => (cap.startsWith('CAP_') ? cap : `CAP_${cap}`).toUpperCase();
  const add = stringsOf(capabilities.add, `${where} capabilities.add`) ?? [];
  const drop = stringsOf(capabilities.drop, `${where} capabilities.drop`) ?? [];
  let set = new Set(DEFAULT_CAPABILITIES);
  if (add.includes('ALL')) set = new Set(ALL_CAPABILITIES);
  if (drop.includes('ALL')) set = new Set();
  for (const cap of add.filter((cap) => cap !== 'ALL')) {
    if (!ALL_CAPABILITIES.includes(name(cap))) throw new Error(`${where}: unknown capability ${cap}`);
    set.add(name(cap));
  }
  for (const cap of drop.filter((cap) => cap !== 'ALL')) set.delete(name(cap));
  return [...set];
}

/** uid/gid: runAsUser/runAsGroup (container over pod), else the image's USER; fsGroup and supplementalGroups added. */
function userOf(
  security: Fields,
  podSecurity: Fields,
  image: ImageConfig,
  rootfs: string,
  where: string,
): OciSpec['process']['user'] {
  const pick = (field: string): number | undefined =>
    numberOf(security[field], `${where} ${field}`) ??
    numberOf(podSecurity[field], `spec.securityContext.${field}`);
  const [imageUser = '', imageGroup] = image.user.split(':');
  const passwd = readFileSync(join(rootfs, 'etc', 'passwd'), 'utf8')
    .split('\n')
    .map((line) => line.split(':'));
  const entry = (user: string): string[] | undefined =>
    passwd.find((fields) => fields[0] === user || fields[2] === user);
  let uid = pick('runAsUser');
  if (uid === undefined) {
    const found = entry(imageUser || '0');
    if (found) uid = Number(found[2]);
    else if (/^[0-9]+$/.test(imageUser)) uid = Number(imageUser);
    else throw new Error(`${where}: image user ${imageUser} is not in the image's /etc/passwd`);
  }
  const nonRoot = booleanOf(security.runAsNonRoot ?? podSecurity.runAsNonRoot, `${where} runAsNonRoot`);
  if (nonRoot && uid === 0)
    throw new Error(`${where}: container has runAsNonRoot and image will run as root`);
  let gid = pick('runAsGroup');
  if (gid === undefined && imageGroup !== undefined && pick('runAsUser') === undefined)
    gid = Number(imageGroup);
  gid ??= Number(entry(String(uid))?.[3] ?? 0);
  const fsGroup = numberOf(podSecurity.fsGroup, 'spec.securityContext.fsGroup');
  const supplemental = (podSecurity.supplementalGroups as number[] | undefined) ?? [];
  return { uid, gid, additionalGids: [...(fsGroup === undefined ? [] : [fsGroup]), ...supplemental] };
}

function resourcesOf(container: Fields, where: string): Omit<OciSpec['linux']['resources'], 'devices'> {
  const resources = optionalFields(container.resources, `${where}.resources`) ?? {};
  onlyKnown(resources, ['requests', 'limits'], `${where}.resources`);
  const requests = optionalFields(resources.requests, `${where}.resources.requests`) ?? {};
  const limits = optionalFields(resources.limits, `${where}.resources.limits`) ?? {};
  onlyKnown(requests, ['cpu', 'memory', 'ephemeral-storage'], `${where}.resources.requests`);
  onlyKnown(limits, ['cpu', 'memory', 'ephemeral-storage'], `${where}.resources.limits`);
  const result: Omit<OciSpec['linux']['resources'], 'devices'> = {};
  if (limits.memory !== undefined)
    result.memory = { limit: parseQuantity(limits.memory, `${where} limits.memory`) };
  const cpu: NonNullable<OciSpec['linux']['resources']['cpu']> = {};
  const requested = requests.cpu ?? limits.cpu;
  if (requested !== undefined)
    cpu.shares = Math.max(2, Math.round(parseQuantity(requested, `${where} requests.cpu`) * 1024));
  if (limits.cpu !== undefined) {
    cpu.period = 100_000;
    cpu.quota = Math.max(1000, Math.round(parseQuantity(limits.cpu, `${where} limits.cpu`) * 100_000));
  }
  if (Object.keys(cpu).length > 0) result.cpu = cpu;
  return result;
}

function runtimeDefaultSeccomp(): object {
  return {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
    syscalls: [{ names: RUNTIME_DEFAULT_DENIED, action: 'SCMP_ACT_ERRNO', errnoRet: 1 }],
  };
}
