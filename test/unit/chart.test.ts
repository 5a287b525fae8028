import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { DAEMON_ROLES } from '../../src/daemon/daemon-role';
import { writeRoleFile } from '../../src/daemon/role-file';
import { IMAGE_HEALTHY, READY } from '../../src/k8s/conditions';
import {
  CHART_DIR,
  KubeObject,
  MANIFESTS_FILE,
  NAMESPACE,
  ROOT,
  RenderOptions,
  Values,
  lint,
  manifestsText,
  parseObjects,
  render,
} from '../support/chart';
import {
  CAPACITY_RULES,
  CONTROLLER_NAMESPACE_RULES,
  CONTROLLER_RULES,
  LEADER_ELECTION_RULES,
  NODE_NAMESPACE_RULES,
  NODE_RULES,
  PROVISIONER_RULES,
  RESIZER_RULES,
  Rule,
  SNAPSHOTTER_RULES,
  grants,
} from '../support/chart-rbac';
import {
  customResourceValidator,
  schemaAt,
  structuralProblems,
  validateKubernetesObject,
} from '../support/chart-schemas';
import { surgePortClashes } from '../support/pod-probes';

const SNAPSHOT_API = ['snapshot.storage.k8s.io/v1'];
const ADMISSION_POLICY_API = ['admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy'];
const MONITORING_API = ['monitoring.coreos.com/v1'];

/** Variants the device daemon's tests name. */
const PLACEMENT = 'node placement, pod metadata, device daemon settings';
const CUSTOM_DIRS = 'local store, modules not loaded, custom dirs';

/** The chart with the values each test variant layers over values.yaml. */
const VARIANTS: Record<string, RenderOptions> = {
  defaults: {},
  'defaults, cluster with the snapshot API': { apiVersions: SNAPSHOT_API },
  'defaults, cluster with ValidatingAdmissionPolicy': { apiVersions: ADMISSION_POLICY_API },
  'no admission policy': {
    values: { nodeAdmissionPolicy: { create: 'never' } },
    apiVersions: ADMISSION_POLICY_API,
  },
  'admission policy forced': { values: { nodeAdmissionPolicy: { create: 'always' } } },
  'device daemon without standby': { values: { deviceDaemon: { standby: false } } },
  [PLACEMENT]: {
    values: {
      node: {
        priorityClassName: 'vduse-node',
        nodeSelector: { 'kubernetes.io/os': 'linux', 'storage.example.com/vduse': 'true' },
        tolerations: [
          { key: 'storage.example.com/dedicated', operator: 'Equal', value: 'vduse', effect: 'NoSchedule' },
        ],
        affinity: {
          nodeAffinity: {
            requiredDuringSchedulingIgnoredDuringExecution: {
              nodeSelectorTerms: [
                {
                  matchExpressions: [
                    { key: 'node-role.kubernetes.io/control-plane', operator: 'DoesNotExist' },
                  ],
                },
              ],
            },
          },
        },
        podLabels: { team: 'storage' },
        podAnnotations: { 'example.com/owner': 'storage' },
      },
      deviceDaemon: {
        metricsPort: 19841,
        terminationGracePeriodSeconds: 30,
        resources: { requests: { cpu: '100m', memory: '256Mi' }, limits: { memory: '2Gi' } },
      },
    },
  },
  'metrics off': { values: { metrics: { enabled: false } }, apiVersions: MONITORING_API },
  'service monitors, cluster with the monitoring API': {
    values: { metrics: { serviceMonitor: { enabled: true, labels: { release: 'kube-prometheus-stack' } } } },
    apiVersions: MONITORING_API,
  },
  'service monitors asked, no monitoring API': { values: { metrics: { serviceMonitor: { enabled: true } } } },
  'custom images': {
    values: {
      image: { repository: 'registry.example.com/storage/vduse-csi', tag: '1.2.3', pullPolicy: 'Always' },
      imagePullSecrets: [{ name: 'regcred' }],
      sidecars: {
        provisioner: {
          image: { repository: 'mirror.example.com/sig-storage/csi-provisioner', tag: 'v6.4.0' },
        },
        nodeDriverRegistrar: {
          image: { repository: 'mirror.example.com/sig-storage/csi-node-driver-registrar', tag: 'v2.17.0' },
        },
      },
    },
  },
  'no snapshot class': {
    values: { snapshots: { volumeSnapshotClass: { create: 'never' } } },
    apiVersions: SNAPSHOT_API,
  },
  'snapshot class forced': { values: { snapshots: { volumeSnapshotClass: { create: 'always' } } } },
  'snapshots off': { values: { snapshots: { enabled: false } }, apiVersions: SNAPSHOT_API },
  'extra storage classes': {
    values: {
      storageClasses: [
        ...defaultStorageClasses(),
        {
          name: 'vduse-fast',
          default: false,
          fsType: 'xfs',
          reclaimPolicy: 'Retain',
          allowVolumeExpansion: true,
          mountOptions: ['noatime'],
          parameters: { queues: 8, queueSize: 1024, blockSize: 4096 },
        },
      ],
    },
  },
  'ceph RBD classes': {
    values: {
      ceph: {
        clusters: [{ clusterID: 'prod', monitors: ['10.0.0.1:6789', '10.0.0.2:6789'] }],
        storageClasses: [
          {
            name: 'vduse-rbd',
            clusterID: 'prod',
            pool: 'kubernetes',
            radosNamespace: 'team-a',
            maxCloneDepth: 4,
            fsType: 'ext4',
            provisionerSecret: { name: 'csi-rbd-provisioner' },
            nodeStageSecret: { name: 'csi-rbd-node', namespace: 'ceph' },
          },
        ],
        volumeSnapshotClasses: [
          {
            name: 'vduse-rbd-snapshots',
            snapshotterSecret: { name: 'csi-rbd-snapshotter', namespace: 'ceph' },
          },
        ],
      },
    },
    apiVersions: SNAPSHOT_API,
  },
  'ceph clusters from an existing ConfigMap': {
    values: { ceph: { existingClustersConfigMap: 'ceph-csi-config' } },
  },
  [CUSTOM_DIRS]: {
    values: {
      store: 'local',
      node: { loadKernelModules: false },
      dataDir: '/srv/vduse/data',
      stateDir: '/srv/vduse/state',
      kubeletDir: '/var/snap/microk8s/common/var/lib/kubelet',
      logLevel: 'debug',
    },
  },
};

function defaultStorageClasses(): Values[] {
  // values.yaml's list, read with the same parser the chart's consumers use.
  const [values] = parseObjects(readFileSync(join(CHART_DIR, 'values.yaml'), 'utf8')) as unknown as Values[];
  return values!.storageClasses as Values[];
}

const rendered = new Map<string, KubeObject[]>();
function objectsOf(variant: string): KubeObject[] {
  let objects = rendered.get(variant);
  if (!objects) {
    objects = render({ ...VARIANTS[variant], includeCrds: true });
    rendered.set(variant, objects);
  }
  return objects;
}

function only(objects: KubeObject[], kind: string, name?: string): KubeObject {
  const found = objects.filter(
    (object) => object.kind === kind && (name === undefined || object.metadata.name === name),
  );
  assert.equal(found.length, 1, `expected one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`);
  return found[0]!;
}

function ofKind(objects: KubeObject[], kind: string): KubeObject[] {
  return objects.filter((object) => object.kind === kind);
}

const COMPONENT_LABEL = 'app.kubernetes.io/component';

/**
 * The one DaemonSet of a component (its component label), named <release>-<component>, whose
 * selector and pod template carry that component too.
 */
function daemonSetOf(objects: KubeObject[], component: 'node' | 'device-daemon'): KubeObject {
  const found = ofKind(objects, 'DaemonSet').filter(
    (daemonSet) => daemonSet.metadata.labels?.[COMPONENT_LABEL] === component,
  );
  assert.equal(found.length, 1, `expected one DaemonSet of component ${component}, found ${found.length}`);
  const daemonSet = found[0]!;
  assert.equal(daemonSet.metadata.name, `vduse-csi-${component}`);
  assert.equal(daemonSet.spec.selector.matchLabels[COMPONENT_LABEL], component);
  assert.equal(daemonSet.spec.template.metadata.labels[COMPONENT_LABEL], component);
  return daemonSet;
}

/** The file a device daemon container keeps its role in (its --role-file: one, absolute). */
function roleFileOf(daemon: Container): string {
  const args = daemon.args as string[];
  const files = args.flatMap((arg, index) =>
    arg === '--role-file' ? [args[index + 1]!] : arg.startsWith('--role-file=') ? [arg.slice(12)] : [],
  );
  assert.equal(files.length, 1, `container ${daemon.name}: --role-file ${files.length} times`);
  assert.ok(isAbsolute(files[0]!), files[0]);
  return files[0]!;
}

/**
 * The roles (and "stopped", and no file yet) for which an exec probe's command succeeds against a
 * role file the daemon wrote (src/daemon/role-file.ts), run here with the file at a scratch path.
 */
function readyRoles(command: string[], roleFile: string): string[] {
  const directory = mkdtempSync(join(tmpdir(), 'vduse-csi-role-'));
  try {
    const file = join(directory, 'daemon-role');
    const local = command.map((arg) => arg.split(roleFile).join(file));
    assert.notDeepEqual(local, command, `${command.join(' ')} does not name ${roleFile}`);
    const ready: string[] = [];
    for (const role of [...DAEMON_ROLES, 'stopped', 'no file'] as const) {
      rmSync(file, { force: true });
      if (role !== 'no file') writeRoleFile(file, role);
      const result = spawnSync(local[0]!, local.slice(1), { encoding: 'utf8', timeout: 10_000 });
      if (result.error) throw result.error;
      if (result.status === 0) ready.push(role);
    }
    return ready;
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

/** The node plugin's DaemonSet. */
const nodeDaemonSetOf = (objects: KubeObject[]): KubeObject => daemonSetOf(objects, 'node');
/** The device daemon's DaemonSet. */
const deviceDaemonSetOf = (objects: KubeObject[]): KubeObject => daemonSetOf(objects, 'device-daemon');

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Container = Record<string, any>;

function podSpecOf(workload: KubeObject): Container {
  return workload.spec.template.spec as Container;
}

function containersOf(workload: KubeObject): Container[] {
  const spec = podSpecOf(workload);
  return [...(spec.initContainers ?? []), ...spec.containers];
}

function container(workload: KubeObject, name: string): Container {
  const found = containersOf(workload).find((candidate) => candidate.name === name);
  assert.ok(found, `${workload.kind} ${workload.metadata.name} has no container ${name}`);
  return found;
}

function rulesOf(role: KubeObject): Rule[] {
  return role.rules as Rule[];
}

/** The plugin container runs with the cluster store, in the namespace of its pod. */
function assertClusterStore(plugin: Container): void {
  assert.ok(plugin.args.includes('--store=kubernetes'), plugin.args.join(' '));
  assert.ok(plugin.args.includes('--kube-namespace=$(NAMESPACE)'), plugin.args.join(' '));
  const namespace = plugin.env.find((variable: Container) => variable.name === 'NAMESPACE');
  assert.deepEqual(namespace?.valueFrom, { fieldRef: { fieldPath: 'metadata.namespace' } });
}

function assertLocalStore(plugin: Container): void {
  assert.ok(plugin.args.includes('--store=local'), plugin.args.join(' '));
  assert.ok(!plugin.args.some((arg: string) => arg.startsWith('--kube-namespace')));
  assert.ok(!plugin.env.some((variable: Container) => variable.name === 'NAMESPACE'));
}

describe('charts/vduse-csi', function () {
  this.timeout(180_000);

  describe('helm lint --strict', () => {
    for (const [variant, options] of Object.entries(VARIANTS)) {
      it(`passes: ${variant}`, () => {
        const result = lint(options.values);
        assert.equal(result.status, 0, `${result.stdout}\n${result.stderr}`);
      });
    }
  });

  describe('values.schema.json refuses', () => {
    const refused: Array<[string, Values, RegExp]> = [
      ['an unknown top-level key', { replicaCount: 2 }, /replicaCount/],
      ['a misspelt node key', { node: { standBy: false } }, /standBy/],
      [
        'the removed node.standby (deviceDaemon.standby replaces it)',
        { node: { standby: false } },
        /standby/,
      ],
      ['a misspelt deviceDaemon key', { deviceDaemon: { standBy: false } }, /standBy/],
      ['a device daemon standby that is not a boolean', { deviceDaemon: { standby: 'no' } }, /standby/],
      ['a device daemon metrics port out of range', { deviceDaemon: { metricsPort: 70000 } }, /metricsPort/],
      ['an image tagged latest', { sidecars: { resizer: { image: { tag: 'latest' } } } }, /tag/],
      [
        'a queue count the plugin refuses',
        { storageClasses: [{ ...defaultStorageClasses()[0], parameters: { queues: 17 } }] },
        /queues/,
      ],
      [
        'a filesystem the plugin cannot make',
        { storageClasses: [{ ...defaultStorageClasses()[0], fsType: 'btrfs' }] },
        /fsType/,
      ],
      ['a relative data directory', { dataDir: 'var/lib/vduse' }, /dataDir/],
      ['a second controller replica', { controller: { replicas: 2 } }, /replicas/],
      ['a store the plugin does not have', { store: 'etcd' }, /store/],
      [
        'an admission policy setting other than auto/always/never',
        { nodeAdmissionPolicy: { create: 'yes' } },
        /create/,
      ],
      [
        'the removed controller.hostStore (store: local replaces it)',
        { controller: { hostStore: { enabled: true } } },
        /hostStore/,
      ],
      ['an unquoted resource quantity', { node: { resources: { requests: { cpu: 1 } } } }, /cpu/],
      [
        "an unquoted resource quantity of the device daemon's",
        { deviceDaemon: { resources: { limits: { memory: 1024 } } } },
        /memory/,
      ],
      [
        'a scrape interval prometheus-operator cannot parse',
        { metrics: { serviceMonitor: { interval: '1.5s' } } },
        /interval/,
      ],
    ];
    for (const [what, values, mention] of refused) {
      it(what, () => {
        const result = lint(values);
        assert.notEqual(result.status, 0, `helm lint accepted ${JSON.stringify(values)}`);
        assert.match(`${result.stdout}\n${result.stderr}`, mention);
      });
    }

    it("a port of the node's pods that is another of them (a template check)", () => {
      const clash =
        /node\.healthPort, \.registrarHealthPort, \.metricsPort and deviceDaemon\.metricsPort must differ/;
      const clashing: Values[] = [
        // The node plugin's metrics port, one of its health ports.
        { node: { metricsPort: 9839 } },
        // The device daemon's metrics port, the node plugin's (both on every address of the node).
        { deviceDaemon: { metricsPort: 9840 } },
        { node: { metricsPort: 19840 }, deviceDaemon: { metricsPort: 19840 } },
        // The device daemon's metrics port, a health port of the node plugin (bound on 127.0.0.1
        // of the same host network: :port takes it on every address).
        { deviceDaemon: { metricsPort: 9838 } },
        { deviceDaemon: { metricsPort: 9839 } },
      ];
      for (const values of clashing) {
        assert.throws(() => render({ values }), clash, JSON.stringify(values));
        // Without metrics neither metrics port is bound.
        assert.doesNotThrow(
          () => render({ values: { ...values, metrics: { enabled: false } } }),
          JSON.stringify(values),
        );
      }
      // Health ports clash with metrics off too.
      assert.throws(
        () => render({ values: { node: { registrarHealthPort: 9838 }, metrics: { enabled: false } } }),
        clash,
      );
      assert.doesNotThrow(() => render({ values: { deviceDaemon: { metricsPort: 19841 } } }));
    });

    it('two default StorageClasses (a template check)', () => {
      const classes = defaultStorageClasses().map((storageClass) => ({ ...storageClass, default: true }));
      assert.throws(
        () => render({ values: { storageClasses: classes } }),
        /at most one class may have default: true/,
      );
    });
  });

  for (const variant of Object.keys(VARIANTS)) {
    describe(`rendered: ${variant}`, () => {
      it('every object validates against the Kubernetes API schema', () => {
        const problems = objectsOf(variant).flatMap((object) =>
          validateKubernetesObject(object).map(
            (problem) => `${object.kind} ${object.metadata.name}: ${problem}`,
          ),
        );
        assert.deepEqual(problems, []);
      });

      it('every container image is pinned to a tag other than latest', () => {
        for (const workload of [
          ...ofKind(objectsOf(variant), 'Deployment'),
          ...ofKind(objectsOf(variant), 'DaemonSet'),
        ]) {
          for (const { name, image } of containersOf(workload)) {
            const match = /^[^@\s]+?:([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$/.exec(image);
            assert.ok(match, `${workload.metadata.name}/${name}: image ${image} has no tag`);
            assert.notEqual(match[1], 'latest', `${workload.metadata.name}/${name}: image ${image}`);
          }
        }
      });

      it('RBAC has no wildcard group, resource or verb', () => {
        for (const role of [
          ...ofKind(objectsOf(variant), 'ClusterRole'),
          ...ofKind(objectsOf(variant), 'Role'),
        ]) {
          for (const rule of role.rules as Array<Record<string, string[]>>) {
            for (const field of ['apiGroups', 'resources', 'verbs', 'resourceNames', 'nonResourceURLs'])
              assert.ok(
                !(rule[field] ?? []).some((entry) => entry.includes('*')),
                `${role.metadata.name}: ${field} ${rule[field]}`,
              );
          }
          assert.equal(role.aggregationRule, undefined, `${role.metadata.name} aggregates other roles`);
        }
      });

      it('every binding names a role and a ServiceAccount of the render; every pod a ServiceAccount', () => {
        const objects = objectsOf(variant);
        const accounts = new Set(ofKind(objects, 'ServiceAccount').map((account) => account.metadata.name));
        for (const binding of [...ofKind(objects, 'ClusterRoleBinding'), ...ofKind(objects, 'RoleBinding')]) {
          // A RoleBinding's Role is in the binding's own namespace.
          const inScope =
            binding.kind === 'RoleBinding'
              ? objects.filter((object) => object.metadata.namespace === binding.metadata.namespace)
              : objects;
          only(inScope, binding.roleRef.kind, binding.roleRef.name);
          for (const subject of binding.subjects) {
            assert.equal(subject.kind, 'ServiceAccount');
            assert.equal(subject.namespace, NAMESPACE);
            assert.ok(
              accounts.has(subject.name),
              `${binding.metadata.name}: no ServiceAccount ${subject.name}`,
            );
          }
        }
        const workloads = [...ofKind(objects, 'Deployment'), ...ofKind(objects, 'DaemonSet')];
        assert.deepEqual(
          workloads.map((workload) => `${workload.kind} ${workload.metadata.name}`),
          [
            'Deployment vduse-csi-controller',
            'DaemonSet vduse-csi-device-daemon',
            'DaemonSet vduse-csi-node',
          ],
        );
        for (const workload of workloads) {
          const account = podSpecOf(workload).serviceAccountName;
          assert.ok(accounts.has(account), workload.metadata.name);
          // Each component its own account: the device daemon's pods get none of the plugins' roles.
          assert.equal(
            account,
            `vduse-csi-${workload.metadata.labels[COMPONENT_LABEL]}`,
            workload.metadata.name,
          );
        }
      });

      it("the device daemon's ServiceAccount mounts no token and is bound to no role", () => {
        const objects = objectsOf(variant);
        const daemonSet = deviceDaemonSetOf(objects);
        const account = only(objects, 'ServiceAccount', 'vduse-csi-device-daemon');
        assert.equal(account.metadata.namespace, NAMESPACE);
        assert.equal(podSpecOf(daemonSet).serviceAccountName, account.metadata.name);
        assert.equal(account.automountServiceAccountToken, false);
        assert.equal(podSpecOf(daemonSet).automountServiceAccountToken, false);
        // Nor a projected token of its own.
        for (const volume of podSpecOf(daemonSet).volumes)
          assert.equal(volume.projected, undefined, `volume ${volume.name}`);
        for (const binding of [...ofKind(objects, 'ClusterRoleBinding'), ...ofKind(objects, 'RoleBinding')])
          for (const subject of binding.subjects)
            assert.notEqual(
              subject.name,
              account.metadata.name,
              `${binding.kind} ${binding.metadata.name} binds the device daemon's ServiceAccount`,
            );
      });

      it('no workload starts a surge pod that clashes with the old one on a port of the node', () => {
        const objects = objectsOf(variant);
        for (const workload of [...ofKind(objects, 'Deployment'), ...ofKind(objects, 'DaemonSet')])
          assert.deepEqual(surgePortClashes(workload), [], `${workload.kind} ${workload.metadata.name}`);
      });

      it('the node DaemonSet replaces its host-network pod in place: no surge pod to clash on ports', () => {
        const daemonSet = nodeDaemonSetOf(objectsOf(variant));
        assert.equal(podSpecOf(daemonSet).hostNetwork, true);
        assert.ok(containersOf(daemonSet).some((candidate) => (candidate.ports ?? []).length > 0));
        assert.deepEqual(daemonSet.spec.updateStrategy, {
          type: 'RollingUpdate',
          rollingUpdate: { maxSurge: 0, maxUnavailable: 1 },
        });
      });

      it('the device-daemon DaemonSet starts the new pod beside the old one, which it can: no port, no network probe', () => {
        const daemonSet = deviceDaemonSetOf(objectsOf(variant));
        assert.equal(podSpecOf(daemonSet).hostNetwork, true);
        // The old pod stops only once the new one is ready: the devices are never without a daemon.
        assert.deepEqual(daemonSet.spec.updateStrategy, {
          type: 'RollingUpdate',
          rollingUpdate: { maxSurge: 1, maxUnavailable: 0 },
        });
        for (const candidate of containersOf(daemonSet)) {
          const where = `container ${candidate.name}`;
          assert.deepEqual(candidate.ports ?? [], [], `${where} declares ports`);
          for (const kind of ['startupProbe', 'livenessProbe', 'readinessProbe']) {
            const probe = candidate[kind];
            if (probe === undefined) continue;
            assert.deepEqual(
              Object.keys(probe).filter((key) => ['httpGet', 'tcpSocket', 'grpc'].includes(key)),
              [],
              `${where}: ${kind}`,
            );
            assert.ok(probe.exec, `${where}: ${kind} is not exec`);
          }
        }
        assert.deepEqual(surgePortClashes(daemonSet), []);
      });

      it('each device daemon container is ready when its role file says it serves or stands by', () => {
        const daemonSet = deviceDaemonSetOf(objectsOf(variant));
        const daemons = podSpecOf(daemonSet).containers as Container[];
        assert.ok(daemons.length > 0);
        for (const daemon of daemons) {
          const where = `container ${daemon.name}`;
          const roleFile = roleFileOf(daemon);
          const command = daemon.readinessProbe.exec.command as string[];
          assert.equal(command.at(-1), roleFile, `${where}: the probe reads ${command.join(' ')}`);
          assert.deepEqual(readyRoles(command, roleFile), ['standby', 'serving'], where);
          // The file is the container's own: no volume (shared with the other daemon, or with the
          // other pod of an update) holds it.
          for (const mount of daemon.volumeMounts as Container[])
            assert.ok(
              roleFile !== mount.mountPath && !roleFile.startsWith(`${mount.mountPath.replace(/\/$/, '')}/`),
              `${where}: ${roleFile} is in volume ${mount.name}`,
            );
        }
      });

      it('the plugin containers start patiently, are live while they answer, ready when they can serve', () => {
        for (const workload of [
          only(objectsOf(variant), 'Deployment'),
          nodeDaemonSetOf(objectsOf(variant)),
        ]) {
          const plugin = container(workload, 'vduse-csi');
          const { startupProbe, livenessProbe, readinessProbe } = plugin;
          assert.ok(
            startupProbe.periodSeconds * startupProbe.failureThreshold >= 300,
            'startup allows 5 min',
          );
          assert.equal(startupProbe.httpGet.path, '/healthz');
          assert.equal(livenessProbe.httpGet.path, '/healthz');
          assert.equal(readinessProbe.httpGet.path, '/readyz');
          const port = plugin.ports.find(
            (candidate: Container) => candidate.name === 'healthz',
          ).containerPort;
          const host = podSpecOf(workload).hostNetwork ? '127.0.0.1' : '';
          assert.ok(plugin.args.includes(`--health-address=${host}:${port}`), workload.kind);
          for (const probe of [startupProbe, livenessProbe, readinessProbe]) {
            assert.equal(probe.httpGet.port, 'healthz');
            assert.equal(probe.httpGet.host, host || undefined);
          }
        }
      });
    });
  }

  describe('CSIDriver', () => {
    it('declares what the plugin does', () => {
      const driver = only(objectsOf('defaults'), 'CSIDriver');
      assert.equal(driver.metadata.name, 'csi.vduse.dev');
      assert.deepEqual(driver.spec, {
        attachRequired: false,
        podInfoOnMount: true,
        fsGroupPolicy: 'File',
        storageCapacity: true,
        volumeLifecycleModes: ['Persistent'],
      });
    });
  });

  describe('StorageClasses', () => {
    it('ext4 (the default), xfs and a block class, late-binding and expandable', () => {
      const classes = ofKind(objectsOf('defaults'), 'StorageClass');
      assert.deepEqual(
        classes.map((storageClass) => storageClass.metadata.name),
        ['vduse-ext4', 'vduse-xfs', 'vduse-block'],
      );
      for (const storageClass of classes) {
        assert.equal(storageClass.provisioner, 'csi.vduse.dev');
        assert.equal(storageClass.volumeBindingMode, 'WaitForFirstConsumer');
        assert.equal(storageClass.allowVolumeExpansion, true);
        for (const key of ['queues', 'queueSize', 'blockSize'])
          assert.match(storageClass.parameters[key], /^\d+$/);
      }
      const defaults = classes.filter(
        (storageClass) =>
          storageClass.metadata.annotations?.['storageclass.kubernetes.io/is-default-class'] === 'true',
      );
      assert.deepEqual(
        defaults.map((storageClass) => storageClass.metadata.name),
        ['vduse-ext4'],
      );
      assert.equal(classes[0]!.parameters['csi.storage.k8s.io/fstype'], 'ext4');
      assert.equal(classes[1]!.parameters['csi.storage.k8s.io/fstype'], 'xfs');
      assert.equal(classes[2]!.parameters['csi.storage.k8s.io/fstype'], undefined);
    });

    it('extra classes from values', () => {
      const fast = only(objectsOf('extra storage classes'), 'StorageClass', 'vduse-fast');
      assert.deepEqual(fast.parameters, {
        'csi.storage.k8s.io/fstype': 'xfs',
        blockSize: '4096',
        queueSize: '1024',
        queues: '8',
      });
      assert.equal(fast.reclaimPolicy, 'Retain');
      assert.deepEqual(fast.mountOptions, ['noatime']);
    });
  });

  describe('Ceph RBD', () => {
    const pluginsOf = (variant: string): Container[] => [
      container(nodeDaemonSetOf(objectsOf(variant)), 'vduse-csi'),
      container(only(objectsOf(variant), 'Deployment'), 'vduse-csi'),
    ];
    const volumesOf = (variant: string): Container[] =>
      [nodeDaemonSetOf(objectsOf(variant)), only(objectsOf(variant), 'Deployment')].map((workload) =>
        podSpecOf(workload).volumes.find((volume: Container) => volume.name === 'ceph-clusters'),
      );

    it('renders nothing of Ceph by default', () => {
      for (const plugin of pluginsOf('defaults')) {
        assert.ok(!plugin.args.some((arg: string) => arg.startsWith('--ceph-clusters')));
        assert.ok(!plugin.volumeMounts.some((mount: Container) => mount.name === 'ceph-clusters'));
      }
      assert.ok(!objectsOf('defaults').some((object) => object.metadata.name.includes('ceph')));
    });

    it('the clusters in a ConfigMap, mounted into both plugins and passed as --ceph-clusters', () => {
      const map = only(objectsOf('ceph RBD classes'), 'ConfigMap', 'vduse-csi-ceph-clusters');
      assert.deepEqual(JSON.parse(map.data['config.json'] as string), [
        { clusterID: 'prod', monitors: ['10.0.0.1:6789', '10.0.0.2:6789'] },
      ]);
      for (const [variant, name] of [
        ['ceph RBD classes', 'vduse-csi-ceph-clusters'],
        ['ceph clusters from an existing ConfigMap', 'ceph-csi-config'],
      ] as const) {
        for (const plugin of pluginsOf(variant)) {
          assert.ok(
            plugin.args.includes('--ceph-clusters=/etc/vduse-csi/ceph/config.json'),
            plugin.args.join(' '),
          );
          const mount = plugin.volumeMounts.find(
            (candidate: Container) => candidate.name === 'ceph-clusters',
          );
          assert.deepEqual(mount, {
            name: 'ceph-clusters',
            mountPath: '/etc/vduse-csi/ceph',
            readOnly: true,
          });
        }
        for (const volume of volumesOf(variant)) assert.deepEqual(volume?.configMap, { name });
      }
      assert.equal(
        ofKind(objectsOf('ceph clusters from an existing ConfigMap'), 'ConfigMap').filter((map) =>
          map.metadata.name.includes('ceph'),
        ).length,
        0,
      );
    });

    it('RBD StorageClasses bind at once and name the Secrets, never a key', () => {
      const storageClass = only(objectsOf('ceph RBD classes'), 'StorageClass', 'vduse-rbd');
      assert.equal(storageClass.volumeBindingMode, 'Immediate');
      assert.equal(storageClass.allowVolumeExpansion, true);
      assert.equal(storageClass.reclaimPolicy, 'Delete');
      assert.deepEqual(storageClass.parameters, {
        backend: 'rbd',
        clusterID: 'prod',
        pool: 'kubernetes',
        radosNamespace: 'team-a',
        maxCloneDepth: '4',
        'csi.storage.k8s.io/fstype': 'ext4',
        'csi.storage.k8s.io/provisioner-secret-name': 'csi-rbd-provisioner',
        'csi.storage.k8s.io/provisioner-secret-namespace': NAMESPACE,
        'csi.storage.k8s.io/controller-expand-secret-name': 'csi-rbd-provisioner',
        'csi.storage.k8s.io/controller-expand-secret-namespace': NAMESPACE,
        'csi.storage.k8s.io/node-stage-secret-name': 'csi-rbd-node',
        'csi.storage.k8s.io/node-stage-secret-namespace': 'ceph',
      });
      const snapshotClass = only(objectsOf('ceph RBD classes'), 'VolumeSnapshotClass', 'vduse-rbd-snapshots');
      assert.deepEqual(snapshotClass.parameters, {
        'csi.storage.k8s.io/snapshotter-secret-name': 'csi-rbd-snapshotter',
        'csi.storage.k8s.io/snapshotter-secret-namespace': 'ceph',
        'csi.storage.k8s.io/snapshotter-list-secret-name': 'csi-rbd-snapshotter',
        'csi.storage.k8s.io/snapshotter-list-secret-namespace': 'ceph',
      });
      assert.equal(ofKind(objectsOf('ceph RBD classes'), 'Secret').length, 0);
    });

    it("lets the controller's sidecars get just those Secrets, in their namespaces", () => {
      const roles = ofKind(objectsOf('ceph RBD classes'), 'Role').filter((role) =>
        role.metadata.name.endsWith('-ceph-secrets'),
      );
      assert.deepEqual(
        roles.map((role) => [role.metadata.namespace, rulesOf(role)]),
        [
          [
            'ceph',
            [
              {
                apiGroups: [''],
                resources: ['secrets'],
                resourceNames: ['csi-rbd-snapshotter'],
                verbs: ['get'],
              },
            ],
          ],
          [
            NAMESPACE,
            [
              {
                apiGroups: [''],
                resources: ['secrets'],
                resourceNames: ['csi-rbd-provisioner'],
                verbs: ['get'],
              },
            ],
          ],
        ],
      );
      for (const role of roles) {
        const binding = only(
          ofKind(objectsOf('ceph RBD classes'), 'RoleBinding').filter(
            (candidate) => candidate.metadata.namespace === role.metadata.namespace,
          ),
          'RoleBinding',
          role.metadata.name,
        );
        assert.deepEqual(binding.subjects, [
          { kind: 'ServiceAccount', name: 'vduse-csi-controller', namespace: NAMESPACE },
        ]);
      }
    });

    it('refuses an RBD class without clusters, and unknown or secret-bearing keys', () => {
      const rbdClass = {
        name: 'r',
        clusterID: 'prod',
        pool: 'p',
        provisionerSecret: { name: 's' },
        nodeStageSecret: { name: 's' },
      };
      assert.throws(
        () => render({ values: { ceph: { storageClasses: [rbdClass] } } }),
        /ceph.clusters is empty/,
      );
      for (const values of [
        { ceph: { storageClasses: [{ ...rbdClass, userKey: 'AQD' }] } },
        { ceph: { storageClasses: [{ ...rbdClass, provisionerSecret: { name: 's', userKey: 'AQD' } }] } },
        { ceph: { storageClasses: [{ ...rbdClass, maxCloneDepth: 33 }] } },
        { ceph: { clusters: [{ clusterID: 'bad id', monitors: ['m'] }] } },
      ]) {
        const result = lint(values);
        assert.notEqual(result.status, 0, `helm lint accepted ${JSON.stringify(values)}`);
      }
    });
  });

  describe('VolumeSnapshotClass', () => {
    const classes = (variant: string): KubeObject[] => ofKind(objectsOf(variant), 'VolumeSnapshotClass');

    it('only when the cluster serves snapshot.storage.k8s.io/v1, unless forced', () => {
      assert.equal(classes('defaults').length, 0);
      assert.equal(classes('defaults, cluster with the snapshot API').length, 1);
      assert.equal(classes('snapshot class forced').length, 1);
      assert.equal(classes('no snapshot class').length, 0);
      assert.equal(classes('snapshots off').length, 0);
    });

    it('names the driver', () => {
      const snapshotClass = classes('defaults, cluster with the snapshot API')[0]!;
      assert.equal(snapshotClass.driver, 'csi.vduse.dev');
      assert.equal(snapshotClass.deletionPolicy, 'Delete');
      assert.equal(
        snapshotClass.metadata.annotations['snapshot.storage.kubernetes.io/is-default-class'],
        'true',
      );
    });
  });

  describe('RBAC', () => {
    const clusterRole = (variant: string, suffix: string): KubeObject =>
      only(objectsOf(variant), 'ClusterRole', `vduse-csi-${suffix}`);

    it('each sidecar gets the rules its own deploy manifests document', () => {
      assert.deepEqual(grants(rulesOf(clusterRole('defaults', 'provisioner'))), grants(PROVISIONER_RULES));
      assert.deepEqual(grants(rulesOf(clusterRole('defaults', 'resizer'))), grants(RESIZER_RULES));
      assert.deepEqual(grants(rulesOf(clusterRole('defaults', 'snapshotter'))), grants(SNAPSHOTTER_RULES));
    });

    it('cluster mode: the controller writes the CRDs, the node agent their status and its finalizer', () => {
      assert.deepEqual(grants(rulesOf(clusterRole('defaults', 'controller'))), grants(CONTROLLER_RULES));
      assert.deepEqual(grants(rulesOf(clusterRole('defaults', 'node'))), grants(NODE_RULES));
    });

    it('cluster mode: the capacity ConfigMap, by name where RBAC can, in the release namespace only', () => {
      const objects = objectsOf('defaults');
      const controller = only(objects, 'Role', 'vduse-csi-controller');
      const node = only(objects, 'Role', 'vduse-csi-node');
      for (const role of [controller, node]) assert.equal(role.metadata.namespace, NAMESPACE);
      assert.deepEqual(grants(rulesOf(controller)), grants(CONTROLLER_NAMESPACE_RULES));
      assert.deepEqual(grants(rulesOf(node)), grants(NODE_NAMESPACE_RULES));
      // Only create (RBAC cannot name an object that does not exist yet) goes without a name.
      for (const role of [controller, node])
        for (const rule of rulesOf(role))
          if (!rule.verbs.every((verb) => verb === 'create'))
            assert.deepEqual(rule.resourceNames, ['vduse-csi-capacity'], role.metadata.name);
    });

    it('the local store: no roles for our controller or the node plugin, and no token in the node pod', () => {
      const objects = objectsOf('local store, modules not loaded, custom dirs');
      const ours = [...ofKind(objects, 'ClusterRole'), ...ofKind(objects, 'Role')]
        .map((role) => `${role.kind} ${role.metadata.name}`)
        .filter((role) => /-(controller|node)$/.test(role));
      assert.deepEqual(ours, []);
      const bindings = [...ofKind(objects, 'ClusterRoleBinding'), ...ofKind(objects, 'RoleBinding')];
      assert.ok(
        !bindings.some((binding) => binding.subjects.some((s: Container) => s.name === 'vduse-csi-node')),
      );
      assert.equal(only(objects, 'ServiceAccount', 'vduse-csi-node').automountServiceAccountToken, false);
      assert.equal(
        only(objects, 'ServiceAccount', 'vduse-csi-controller').automountServiceAccountToken,
        undefined,
      );
    });

    it('leader election and capacity objects only in the release namespace', () => {
      const objects = objectsOf('defaults');
      const election = only(objects, 'Role', 'vduse-csi-leader-election');
      assert.equal(election.metadata.namespace, NAMESPACE);
      assert.deepEqual(grants(rulesOf(election)), grants(LEADER_ELECTION_RULES));
      assert.deepEqual(grants(rulesOf(only(objects, 'Role', 'vduse-csi-capacity'))), grants(CAPACITY_RULES));
    });

    it('who is bound to what', () => {
      const objects = objectsOf('defaults');
      const boundTo = (kind: string): string[] =>
        ofKind(objects, kind)
          .map(
            (binding) =>
              `${binding.roleRef.name} -> ${binding.subjects.map((s: { name: string }) => s.name).join(',')}`,
          )
          .sort();
      assert.deepEqual(boundTo('ClusterRoleBinding'), [
        'vduse-csi-controller -> vduse-csi-controller',
        'vduse-csi-node -> vduse-csi-node',
        'vduse-csi-provisioner -> vduse-csi-controller',
        'vduse-csi-resizer -> vduse-csi-controller',
        'vduse-csi-snapshotter -> vduse-csi-controller',
      ]);
      assert.deepEqual(boundTo('RoleBinding'), [
        'vduse-csi-capacity -> vduse-csi-controller',
        'vduse-csi-controller -> vduse-csi-controller',
        'vduse-csi-leader-election -> vduse-csi-controller',
        'vduse-csi-node -> vduse-csi-node',
      ]);
    });

    it('no snapshotter role without the snapshotter', () => {
      const objects = objectsOf('snapshots off');
      assert.equal(objects.filter((object) => object.metadata.name === 'vduse-csi-snapshotter').length, 0);
      const deployment = only(objects, 'Deployment');
      assert.ok(!containersOf(deployment).some((candidate) => candidate.name === 'csi-snapshotter'));
    });
  });

  describe('node admission policy', () => {
    const policyObjects = (objects: KubeObject[]): string[] =>
      objects
        .filter((object) => object.apiVersion === 'admissionregistration.k8s.io/v1')
        .map((object) => `${object.kind} ${object.metadata.name}`);
    const BOTH = [
      'ValidatingAdmissionPolicy vduse-csi-node-objects',
      'ValidatingAdmissionPolicyBinding vduse-csi-node-objects',
    ];

    it('cluster mode, when the cluster serves ValidatingAdmissionPolicy, unless forced or turned off', () => {
      assert.deepEqual(policyObjects(objectsOf('defaults')), []);
      assert.deepEqual(policyObjects(objectsOf('defaults, cluster with ValidatingAdmissionPolicy')), BOTH);
      assert.deepEqual(policyObjects(objectsOf('admission policy forced')), BOTH);
      assert.deepEqual(policyObjects(objectsOf('no admission policy')), []);
      const local = render({
        values: { store: 'local', nodeAdmissionPolicy: { create: 'always' } },
        apiVersions: ADMISSION_POLICY_API,
      });
      assert.deepEqual(policyObjects(local), []);
    });

    it("binds to deny, matches only the node plugin's ServiceAccount, fails closed", () => {
      const objects = objectsOf('admission policy forced');
      const policy = only(objects, 'ValidatingAdmissionPolicy');
      const binding = only(objects, 'ValidatingAdmissionPolicyBinding');
      assert.equal(binding.spec.policyName, policy.metadata.name);
      assert.deepEqual(binding.spec.validationActions, ['Deny']);
      assert.equal(policy.spec.failurePolicy, 'Fail');
      assert.deepEqual(
        policy.spec.matchConditions.map((condition: { expression: string }) => condition.expression),
        [`request.userInfo.username == "system:serviceaccount:${NAMESPACE}:vduse-csi-node"`],
      );
      const rules = policy.spec.matchConstraints.resourceRules as Array<Record<string, string[]>>;
      assert.deepEqual(rules.flatMap((rule) => rule.resources).sort(), [
        'vdusesnapshots',
        'vdusesnapshots/status',
        'vdusevolumes',
        'vdusevolumes/status',
      ]);
    });
  });

  describe('controller Deployment', () => {
    it('runs the plugin in controller mode beside the pinned sidecars', () => {
      const deployment = only(objectsOf('defaults'), 'Deployment');
      assert.deepEqual(
        containersOf(deployment).map((candidate) => candidate.name),
        ['vduse-csi', 'csi-provisioner', 'csi-resizer', 'csi-snapshotter'],
      );
      const plugin = container(deployment, 'vduse-csi');
      assert.equal(plugin.image, 'localhost/vduse-csi:0.1.0');
      assert.deepEqual(plugin.args.slice(0, 3), [
        'plugin',
        '--mode=controller',
        '--endpoint=unix:///csi/csi.sock',
      ]);
      assert.ok(plugin.args.includes('--node-id=$(NODE_NAME)'));
      assertClusterStore(plugin);
    });

    it('csi-provisioner with topology, capacity, metadata and leader election', () => {
      const provisioner = container(only(objectsOf('defaults'), 'Deployment'), 'csi-provisioner');
      assert.equal(provisioner.image, 'registry.k8s.io/sig-storage/csi-provisioner:v6.4.0');
      for (const flag of [
        '--feature-gates=Topology=true',
        '--enable-capacity',
        '--capacity-ownerref-level=2',
        '--extra-create-metadata',
        '--leader-election',
        '--strict-topology',
      ])
        assert.ok(provisioner.args.includes(flag), `missing ${flag}`);
      const env = Object.fromEntries(
        provisioner.env.map((variable: Container) => [variable.name, variable.valueFrom.fieldRef.fieldPath]),
      );
      assert.deepEqual(env, { NAMESPACE: 'metadata.namespace', POD_NAME: 'metadata.name' });
    });

    it('runs as a non-root user that cannot escalate', () => {
      const spec = podSpecOf(only(objectsOf('defaults'), 'Deployment'));
      assert.equal(spec.securityContext.runAsNonRoot, true);
      assert.notEqual(spec.securityContext.runAsUser, 0);
      for (const candidate of spec.containers) {
        assert.equal(candidate.securityContext.allowPrivilegeEscalation, false, candidate.name);
        assert.deepEqual(candidate.securityContext.capabilities.drop, ['ALL'], candidate.name);
        assert.equal(candidate.securityContext.privileged, undefined, candidate.name);
      }
      for (const volume of spec.volumes) assert.equal(volume.hostPath, undefined, volume.name);
    });

    it('cluster mode: nothing on the host, scratch directories only', () => {
      const spec = podSpecOf(only(objectsOf('defaults'), 'Deployment'));
      const volumes = Object.fromEntries(spec.volumes.map((volume: Container) => [volume.name, volume]));
      assert.deepEqual(volumes['data-dir'], { name: 'data-dir', emptyDir: {} });
      assert.deepEqual(volumes['state-dir'], { name: 'state-dir', emptyDir: {} });
    });

    it('the local store: root on the node plugin directories', () => {
      const deployment = only(objectsOf('local store, modules not loaded, custom dirs'), 'Deployment');
      const spec = podSpecOf(deployment);
      assert.equal(spec.securityContext.runAsUser, 0);
      const paths = spec.volumes
        .filter((volume: Container) => volume.hostPath)
        .map((volume: Container) => volume.hostPath.path);
      assert.deepEqual(paths, ['/srv/vduse/data', '/srv/vduse/state']);
      const plugin = container(deployment, 'vduse-csi');
      assert.ok(plugin.args.includes('--data-dir=/srv/vduse/data'));
      assert.ok(plugin.args.includes('--log-level=debug'));
      assertLocalStore(plugin);
    });
  });

  describe('node DaemonSet', () => {
    const daemonSet = (variant = 'defaults'): KubeObject => nodeDaemonSetOf(objectsOf(variant));

    it('runs the plugin in node mode, privileged, with the host paths it needs', () => {
      const spec = podSpecOf(daemonSet());
      assert.equal(spec.priorityClassName, 'system-node-critical');
      // The vdpa generic netlink family exists in the host's network namespace only.
      assert.equal(spec.hostNetwork, true);
      assert.equal(spec.dnsPolicy, 'ClusterFirstWithHostNet');
      assert.equal(spec.hostPID, undefined);
      assert.ok(spec.terminationGracePeriodSeconds >= 60);
      const plugin = container(daemonSet(), 'vduse-csi');
      assert.deepEqual(plugin.args.slice(0, 2), ['plugin', '--mode=node']);
      // The device daemon runs in pods of its own (device-daemon.yaml): the plugin never starts one.
      assert.ok(plugin.args.includes('--external-daemon'), plugin.args.join(' '));
      assert.ok(!plugin.args.includes('--no-standby'));
      assertClusterStore(plugin);
      assert.equal(plugin.securityContext.privileged, true);
      assert.equal(plugin.securityContext.runAsUser, 0);
      const mounts = Object.fromEntries(plugin.volumeMounts.map((mount: Container) => [mount.name, mount]));
      assert.equal(mounts['kubelet-dir'].mountPath, '/var/lib/kubelet');
      assert.equal(mounts['kubelet-dir'].mountPropagation, 'Bidirectional');
      assert.equal(mounts.dev.mountPath, '/dev');
      assert.equal(mounts.sys.mountPath, '/sys');
      assert.equal(mounts['data-dir'].mountPath, '/var/lib/vduse-csi/data');
      assert.equal(mounts['state-dir'].mountPath, '/var/lib/vduse-csi/state');
      const hostPaths = Object.fromEntries(
        spec.volumes
          .filter((volume: Container) => volume.hostPath)
          .map((volume: Container) => [volume.name, volume.hostPath.path]),
      );
      assert.deepEqual(hostPaths, {
        'plugin-dir': '/var/lib/kubelet/plugins/csi.vduse.dev',
        'registration-dir': '/var/lib/kubelet/plugins_registry',
        'kubelet-dir': '/var/lib/kubelet',
        dev: '/dev',
        sys: '/sys',
        'lib-modules': '/lib/modules',
        'data-dir': '/var/lib/vduse-csi/data',
        'state-dir': '/var/lib/vduse-csi/state',
      });
    });

    it('each pod has its own socket directory, registered with the kubelet', () => {
      const registrar = container(daemonSet(), 'node-driver-registrar');
      assert.ok(
        registrar.args.includes(
          '--kubelet-registration-path=/var/lib/kubelet/plugins/csi.vduse.dev/$(POD_UID)/csi.sock',
        ),
      );
      assert.equal(registrar.livenessProbe.httpGet.path, '/healthz');
      for (const name of ['vduse-csi', 'node-driver-registrar']) {
        const candidate = container(daemonSet(), name);
        const socketMount = candidate.volumeMounts.find((mount: Container) => mount.mountPath === '/csi');
        assert.equal(socketMount.subPathExpr, '$(POD_UID)', name);
        assert.ok(
          candidate.env.some((variable: Container) => variable.name === 'POD_UID'),
          name,
        );
      }
    });

    it('its host-network ports are the values, bound on loopback, away from the sidecar defaults', () => {
      const ports = (name: string): number[] =>
        container(daemonSet(), name).ports.map((port: Container) => port.containerPort as number);
      assert.deepEqual(ports('vduse-csi'), [9838, 9840]);
      assert.deepEqual(ports('node-driver-registrar'), [9839]);
      assert.ok(container(daemonSet(), 'vduse-csi').args.includes('--health-address=127.0.0.1:9838'));
      // Prometheus scrapes the node from elsewhere: every address.
      assert.ok(container(daemonSet(), 'vduse-csi').args.includes('--metrics-address=:9840'));
      assert.ok(
        container(daemonSet(), 'node-driver-registrar').args.includes('--http-endpoint=127.0.0.1:9839'),
      );
      assert.equal(container(daemonSet(), 'node-driver-registrar').livenessProbe.httpGet.host, '127.0.0.1');
    });

    it('an init container loads vduse and virtio_vdpa and names the one that is missing', () => {
      const prepare = container(daemonSet(), 'prepare');
      assert.deepEqual(
        podSpecOf(daemonSet()).initContainers.map((candidate: Container) => candidate.name),
        ['prepare'],
      );
      const script = prepare.args.join('\n');
      assert.match(script, /for module in vduse virtio_vdpa; do/);
      assert.match(script, /modprobe "\$module"/);
      assert.match(script, /cannot load kernel module \$module/);
      assert.equal(prepare.securityContext.privileged, true);
      const withoutModules = container(daemonSet('local store, modules not loaded, custom dirs'), 'prepare');
      assert.doesNotMatch(withoutModules.args.join('\n'), /modprobe/);
    });

    it('--external-daemon whatever deviceDaemon.standby says; custom dirs and kubelet dir follow the values', () => {
      // deviceDaemon.standby is the device daemon pod's business: the plugin's args do not change.
      const args = container(daemonSet(), 'vduse-csi').args as string[];
      assert.deepEqual(container(daemonSet('device daemon without standby'), 'vduse-csi').args, args);
      assert.ok(args.includes('--external-daemon'));
      assert.ok(!args.includes('--no-standby'));
      const custom = daemonSet('local store, modules not loaded, custom dirs');
      const plugin = container(custom, 'vduse-csi');
      assert.ok(plugin.args.includes('--state-dir=/srv/vduse/state'));
      assertLocalStore(plugin);
      const kubelet = plugin.volumeMounts.find((mount: Container) => mount.name === 'kubelet-dir');
      assert.equal(kubelet.mountPath, '/var/snap/microk8s/common/var/lib/kubelet');
      assert.ok(!podSpecOf(custom).volumes.some((volume: Container) => volume.name === 'lib-modules'));
    });

    it('custom images replace the defaults everywhere', () => {
      const objects = objectsOf('custom images');
      const images = [...ofKind(objects, 'Deployment'), ...ofKind(objects, 'DaemonSet')].flatMap((workload) =>
        containersOf(workload).map((candidate) => candidate.image as string),
      );
      assert.ok(images.includes('registry.example.com/storage/vduse-csi:1.2.3'));
      assert.ok(images.includes('mirror.example.com/sig-storage/csi-provisioner:v6.4.0'));
      assert.ok(!images.some((image) => image.startsWith('localhost/vduse-csi:')));
      assert.ok(images.includes('mirror.example.com/sig-storage/csi-node-driver-registrar:v2.17.0'));
      assert.ok(
        !images.some((image) => image.startsWith('registry.k8s.io/sig-storage/csi-node-driver-registrar')),
      );
      for (const workload of [nodeDaemonSetOf(objects), deviceDaemonSetOf(objects)])
        assert.deepEqual(podSpecOf(workload).imagePullSecrets, [{ name: 'regcred' }], workload.metadata.name);
      // The device daemon runs the plugin's image, init container included.
      for (const candidate of containersOf(deviceDaemonSetOf(objects))) {
        assert.equal(candidate.image, 'registry.example.com/storage/vduse-csi:1.2.3', candidate.name);
        assert.equal(candidate.imagePullPolicy, 'Always', candidate.name);
      }
    });
  });

  describe('device-daemon DaemonSet', () => {
    const daemonSet = (variant = 'defaults'): KubeObject => deviceDaemonSetOf(objectsOf(variant));
    const daemonsOf = (variant = 'defaults'): Container[] => podSpecOf(daemonSet(variant)).containers;
    /** The hostPath of each of a container's mounts that has one, by mount path. */
    const hostMounts = (workload: KubeObject, name: string): Record<string, Container> => {
      const volumes = new Map<string, Container>(
        podSpecOf(workload).volumes.map((volume: Container) => [volume.name, volume]),
      );
      const mounts: Record<string, Container> = {};
      for (const mount of container(workload, name).volumeMounts as Container[]) {
        const volume = volumes.get(mount.name);
        assert.ok(volume, `${workload.metadata.name}/${name}: no volume ${mount.name}`);
        if (volume.hostPath)
          mounts[mount.mountPath] = { ...volume.hostPath, subPath: mount.subPath ?? mount.subPathExpr };
      }
      return mounts;
    };

    it('runs the device daemon in two containers, one serving and one standing by, or one without standby', () => {
      const expectedArgs = [
        'daemon',
        'run',
        '--state-dir=/var/lib/vduse-csi/state',
        '--copy-dir=/var/lib/vduse-csi/data/volumes',
        '--copy-dir=/var/lib/vduse-csi/data/snapshots',
        '--log-level=info',
        '--role-file=/tmp/daemon-role',
        '--metrics-address=:9841',
      ];
      for (const [variant, names] of [
        ['defaults', ['daemon-a', 'daemon-b']],
        ['device daemon without standby', ['daemon-a']],
      ] as const) {
        const daemons = daemonsOf(variant);
        assert.deepEqual(
          daemons.map((daemon) => daemon.name),
          names,
          variant,
        );
        for (const daemon of daemons) {
          assert.equal(daemon.image, 'localhost/vduse-csi:0.1.0');
          assert.equal(daemon.command, undefined, 'the image entrypoint runs it');
          // The second container is the standby: a daemon's own (--keep-standby) would make three,
          // or one where the values ask for none.
          assert.deepEqual(daemon.args, expectedArgs, `${variant}: ${daemon.name}`);
        }
        // The daemons differ by name only.
        const { name: first, ...firstSpec } = daemons[0]!;
        for (const { name, ...spec } of daemons.slice(1))
          assert.deepEqual(spec, firstSpec, `${first} and ${name}`);
      }
      assert.deepEqual(
        podSpecOf(daemonSet('defaults')).initContainers.map((candidate: Container) => candidate.name),
        podSpecOf(daemonSet('device daemon without standby')).initContainers.map(
          (candidate: Container) => candidate.name,
        ),
      );
      const custom = daemonsOf(CUSTOM_DIRS)[0]!;
      for (const arg of [
        '--state-dir=/srv/vduse/state',
        '--copy-dir=/srv/vduse/data/volumes',
        '--copy-dir=/srv/vduse/data/snapshots',
        '--log-level=debug',
      ])
        assert.ok(custom.args.includes(arg), `${arg} not in ${custom.args.join(' ')}`);
    });

    it('privileged, as root, on host network, with its own grace period and resources', () => {
      for (const [variant, grace, resources] of [
        ['defaults', 60, { requests: { cpu: '50m', memory: '128Mi' }, limits: {} }],
        [PLACEMENT, 30, { requests: { cpu: '100m', memory: '256Mi' }, limits: { memory: '2Gi' } }],
      ] as const) {
        const spec = podSpecOf(daemonSet(variant));
        // vdpa netlink exists in the host's network namespace only.
        assert.equal(spec.hostNetwork, true, variant);
        assert.equal(spec.dnsPolicy, 'ClusterFirstWithHostNet', variant);
        assert.equal(spec.hostPID, undefined, variant);
        assert.equal(spec.terminationGracePeriodSeconds, grace, variant);
        for (const daemon of spec.containers as Container[]) {
          assert.deepEqual(
            daemon.securityContext,
            { privileged: true, runAsUser: 0 },
            `${variant}: ${daemon.name}`,
          );
          assert.deepEqual(daemon.resources, resources, `${variant}: ${daemon.name}`);
        }
      }
    });

    it("runs on the node plugin's nodes: its nodeSelector, tolerations, affinity, priority and pod metadata", () => {
      const placed = podSpecOf(nodeDaemonSetOf(objectsOf(PLACEMENT)));
      assert.equal(placed.nodeSelector['storage.example.com/vduse'], 'true');
      assert.equal(placed.tolerations.length, 1);
      assert.ok(placed.affinity.nodeAffinity);
      assert.equal(placed.priorityClassName, 'vduse-node');
      for (const variant of ['defaults', PLACEMENT, 'custom images']) {
        const node = nodeDaemonSetOf(objectsOf(variant));
        const daemons = deviceDaemonSetOf(objectsOf(variant));
        for (const field of [
          'nodeSelector',
          'tolerations',
          'affinity',
          'priorityClassName',
          'imagePullSecrets',
        ])
          assert.deepEqual(podSpecOf(daemons)[field], podSpecOf(node)[field], `${variant}: ${field}`);
        const { [COMPONENT_LABEL]: nodeComponent, ...nodeLabels } = node.spec.template.metadata.labels;
        const { [COMPONENT_LABEL]: daemonComponent, ...daemonLabels } = daemons.spec.template.metadata.labels;
        assert.deepEqual([nodeComponent, daemonComponent], ['node', 'device-daemon']);
        assert.deepEqual(daemonLabels, nodeLabels, `${variant}: pod labels`);
        assert.deepEqual(
          daemons.spec.template.metadata.annotations,
          node.spec.template.metadata.annotations,
          `${variant}: pod annotations`,
        );
      }
      assert.equal(deviceDaemonSetOf(objectsOf(PLACEMENT)).spec.template.metadata.labels.team, 'storage');
    });

    it("mounts the node plugin's data and state directories of the host at the same paths", () => {
      for (const [variant, dataDir, stateDir] of [
        ['defaults', '/var/lib/vduse-csi/data', '/var/lib/vduse-csi/state'],
        [CUSTOM_DIRS, '/srv/vduse/data', '/srv/vduse/state'],
      ] as const) {
        const node = nodeDaemonSetOf(objectsOf(variant));
        const plugin = container(node, 'vduse-csi');
        const pluginMounts = hostMounts(node, 'vduse-csi');
        assert.ok(plugin.args.includes(`--data-dir=${dataDir}`), variant);
        assert.ok(plugin.args.includes(`--state-dir=${stateDir}`), variant);
        for (const daemon of daemonsOf(variant)) {
          const where = `${variant}: ${daemon.name}`;
          const mounts = hostMounts(daemonSet(variant), daemon.name);
          // The records, sockets and Ceph keyrings (stateDir) and the images (dataDir): the same host
          // directories, seen at the same paths, which the plugin and the daemon tell each other.
          for (const directory of [dataDir, stateDir]) {
            assert.deepEqual(
              mounts[directory],
              { path: directory, type: 'DirectoryOrCreate', subPath: undefined },
              where,
            );
            assert.deepEqual(mounts[directory], pluginMounts[directory], `${where}: ${directory}`);
          }
          // Whatever else of the host it mounts, the node plugin mounts there too (/dev, /sys).
          for (const [path, hostPath] of Object.entries(mounts))
            assert.deepEqual(hostPath, pluginMounts[path], `${where}: ${path}`);
          assert.ok(daemon.args.includes(`--state-dir=${stateDir}`), where);
          assert.deepEqual(
            daemon.args.filter((arg: string) => arg.startsWith('--copy-dir')),
            [`--copy-dir=${dataDir}/volumes`, `--copy-dir=${dataDir}/snapshots`],
            where,
          );
          for (const mount of daemon.volumeMounts as Container[])
            assert.notEqual(mount.readOnly, true, `${where}: ${mount.name}`);
        }
      }
    });

    it("loads the kernel modules with the node pod's init container, or not at all", () => {
      const node = nodeDaemonSetOf(objectsOf('defaults'));
      const spec = podSpecOf(daemonSet());
      assert.deepEqual(
        spec.initContainers.map((candidate: Container) => candidate.name),
        ['prepare'],
      );
      const prepare = container(daemonSet(), 'prepare');
      const nodePrepare = container(node, 'prepare');
      const script = prepare.args.join('\n');
      assert.match(script, /for module in vduse virtio_vdpa; do/);
      assert.match(script, /modprobe "\$module"/);
      assert.match(script, /cannot load kernel module \$module/);
      // The same loader as the node pod's, which then cleans up its socket directories.
      assert.ok(nodePrepare.args.join('\n').startsWith(script), nodePrepare.args.join('\n'));
      for (const field of ['image', 'command', 'env', 'securityContext', 'resources'])
        assert.deepEqual(prepare[field], nodePrepare[field], field);
      assert.deepEqual(prepare.volumeMounts, [
        { name: 'lib-modules', mountPath: '/lib/modules', readOnly: true },
      ]);
      assert.deepEqual(spec.volumes.find((volume: Container) => volume.name === 'lib-modules')?.hostPath, {
        path: '/lib/modules',
        type: 'Directory',
      });

      const without = daemonSet(CUSTOM_DIRS);
      assert.doesNotMatch(container(without, 'prepare').args.join('\n'), /modprobe/);
      assert.equal(container(without, 'prepare').volumeMounts, undefined);
      assert.ok(!podSpecOf(without).volumes.some((volume: Container) => volume.name === 'lib-modules'));
    });

    it('a port or a network probe of the device daemon would be a surge clash (surgePortClashes sees them)', () => {
      const changed = (change: (daemons: Container[]) => void): KubeObject => {
        const copy = structuredClone(daemonSet());
        change(copy.spec.template.spec.containers as Container[]);
        return copy;
      };
      const clashes = [
        changed(
          (daemons) => (daemons[0]!.ports = [{ name: 'metrics', containerPort: 9841, protocol: 'TCP' }]),
        ),
        changed((daemons) => (daemons[1]!.readinessProbe = { httpGet: { path: '/readyz', port: 9842 } })),
        changed((daemons) => (daemons[0]!.livenessProbe = { tcpSocket: { port: 9843 } })),
      ].map((workload) => surgePortClashes(workload));
      for (const [index, port] of [9841, 9842, 9843].entries()) {
        assert.equal(clashes[index]!.length, 1, clashes[index]!.join('\n'));
        assert.match(
          clashes[index]![0]!,
          new RegExp(`DaemonSet vduse-csi-device-daemon, container daemon-.: port ${port} `),
        );
      }
      // Without the surge there is nothing to clash with.
      const inPlace = changed((daemons) => (daemons[0]!.ports = [{ containerPort: 9841 }]));
      inPlace.spec.updateStrategy.rollingUpdate = { maxSurge: 0, maxUnavailable: 1 };
      assert.deepEqual(surgePortClashes(inPlace), []);
    });
  });

  describe('metrics', () => {
    /** The plugins' workloads. */
    const workloads = (variant: string): KubeObject[] => [
      only(objectsOf(variant), 'Deployment'),
      nodeDaemonSetOf(objectsOf(variant)),
    ];
    /** Every workload with metrics: the plugins' and the device daemon's. */
    const allWorkloads = (variant: string): KubeObject[] => [
      ...workloads(variant),
      deviceDaemonSetOf(objectsOf(variant)),
    ];
    const componentOf = (workload: KubeObject): string => workload.metadata.labels[COMPONENT_LABEL];
    /** Whether a Service's selector selects a workload's pods. */
    const selects = (service: KubeObject, workload: KubeObject): boolean => {
      const podLabels = workload.spec.template.metadata.labels as Record<string, string>;
      return Object.entries(service.spec.selector as Record<string, string>).every(
        ([key, value]) => podLabels[key] === value,
      );
    };

    it('both plugins serve /metrics on a port named metrics, the value of their component', () => {
      for (const workload of workloads('defaults')) {
        const plugin = container(workload, 'vduse-csi');
        const port = plugin.ports.find((candidate: Container) => candidate.name === 'metrics');
        assert.equal(port?.containerPort, 9840, workload.kind);
        assert.ok(plugin.args.includes('--metrics-address=:9840'), plugin.args.join(' '));
        // Only the plugin: the sidecars have metrics of their own, not served here.
        for (const other of containersOf(workload).filter((candidate) => candidate.name !== 'vduse-csi'))
          assert.ok(!(other.ports ?? []).some((candidate: Container) => candidate.name === 'metrics'));
      }
      const custom = render({ values: { controller: { metricsPort: 8080 }, node: { metricsPort: 19840 } } });
      assert.ok(container(only(custom, 'Deployment'), 'vduse-csi').args.includes('--metrics-address=:8080'));
      assert.ok(container(nodeDaemonSetOf(custom), 'vduse-csi').args.includes('--metrics-address=:19840'));
    });

    it('every device daemon serves /metrics on deviceDaemon.metricsPort of the node, declared nowhere', () => {
      for (const [variant, port] of [
        ['defaults', 9841],
        [PLACEMENT, 19841],
        ['device daemon without standby', 9841],
      ] as const) {
        const daemonSet = deviceDaemonSetOf(objectsOf(variant));
        for (const daemon of podSpecOf(daemonSet).containers as Container[]) {
          const flags = (daemon.args as string[]).filter((arg) => arg.startsWith('--metrics-address'));
          // Every address: Prometheus scrapes the node from elsewhere.
          assert.deepEqual(flags, [`--metrics-address=:${port}`], `${variant}: ${daemon.name}`);
          // Only the serving daemon binds it: a declared port would clash with the old pod's.
          assert.deepEqual(daemon.ports ?? [], [], `${variant}: ${daemon.name}`);
        }
      }
    });

    it('a headless Service per plugin selects exactly its pods and their metrics port', () => {
      const objects = objectsOf('defaults');
      const services = ofKind(objects, 'Service');
      assert.deepEqual(services.map((service) => service.metadata.name).sort(), [
        'vduse-csi-controller-metrics',
        'vduse-csi-device-daemon-metrics',
        'vduse-csi-node-metrics',
      ]);
      for (const workload of workloads('defaults')) {
        const service = only(objects, 'Service', `vduse-csi-${componentOf(workload)}-metrics`);
        assert.equal(service.metadata.namespace, NAMESPACE);
        assert.equal(service.spec.clusterIP, 'None');
        const podLabels = workload.spec.template.metadata.labels as Record<string, string>;
        for (const [key, value] of Object.entries(service.spec.selector as Record<string, string>))
          assert.equal(podLabels[key], value, `${service.metadata.name} selects ${key}=${value}`);
        for (const other of allWorkloads('defaults').filter((candidate) => candidate !== workload))
          assert.ok(
            !selects(service, other),
            `${service.metadata.name} also selects ${other.metadata.name}'s pods`,
          );
        assert.deepEqual(service.spec.ports, [
          { name: 'metrics', port: 9840, targetPort: 'metrics', protocol: 'TCP' },
        ]);
      }
    });

    it("the device daemon's headless Service targets deviceDaemon.metricsPort by number, on its pods only", () => {
      for (const [variant, port] of [
        ['defaults', 9841],
        [PLACEMENT, 19841],
      ] as const) {
        const objects = objectsOf(variant);
        const daemonSet = deviceDaemonSetOf(objects);
        const service = only(objects, 'Service', 'vduse-csi-device-daemon-metrics');
        assert.equal(service.metadata.namespace, NAMESPACE);
        assert.equal(service.metadata.labels[COMPONENT_LABEL], 'device-daemon');
        assert.equal(service.spec.clusterIP, 'None');
        // The pods declare no port to name: the number itself.
        assert.deepEqual(service.spec.ports, [{ name: 'metrics', port, targetPort: port, protocol: 'TCP' }]);
        assert.equal(typeof service.spec.ports[0].targetPort, 'number');
        assert.equal(service.spec.selector[COMPONENT_LABEL], 'device-daemon');
        assert.ok(
          selects(service, daemonSet),
          `${variant}: ${service.metadata.name} misses the daemon's pods`,
        );
        for (const other of workloads(variant))
          assert.ok(
            !selects(service, other),
            `${variant}: ${service.metadata.name} selects ${other.metadata.name}'s pods`,
          );
        // And the port it targets is the one the daemons are told to serve on.
        for (const daemon of podSpecOf(daemonSet).containers as Container[])
          assert.ok(daemon.args.includes(`--metrics-address=:${port}`), `${variant}: ${daemon.name}`);
      }
    });

    it('metrics off: no flag, no port, no Service', () => {
      for (const workload of workloads('metrics off')) {
        const plugin = container(workload, 'vduse-csi');
        assert.ok(!plugin.args.some((arg: string) => arg.startsWith('--metrics-address')));
        assert.ok(!plugin.ports.some((candidate: Container) => candidate.name === 'metrics'));
      }
      const daemons = podSpecOf(deviceDaemonSetOf(objectsOf('metrics off'))).containers as Container[];
      assert.ok(daemons.length > 0);
      for (const daemon of daemons)
        assert.ok(!daemon.args.some((arg: string) => arg.startsWith('--metrics-address')), daemon.name);
      assert.deepEqual(ofKind(objectsOf('metrics off'), 'Service'), []);
      assert.deepEqual(ofKind(objectsOf('metrics off'), 'ServiceMonitor'), []);
    });

    it('a ServiceMonitor per Service only when the cluster serves monitoring.coreos.com/v1 and the values ask', () => {
      const monitors = (objects: KubeObject[]): KubeObject[] => ofKind(objects, 'ServiceMonitor');
      assert.equal(monitors(objectsOf('defaults')).length, 0);
      assert.equal(monitors(render({ apiVersions: MONITORING_API })).length, 0);
      assert.equal(monitors(objectsOf('service monitors asked, no monitoring API')).length, 0);
      const objects = objectsOf('service monitors, cluster with the monitoring API');
      assert.equal(monitors(objects).length, 3);
      for (const component of ['controller', 'node', 'device-daemon']) {
        const monitor = only(objects, 'ServiceMonitor', `vduse-csi-${component}`);
        const service = only(objects, 'Service', `vduse-csi-${component}-metrics`);
        assert.equal(monitor.metadata.labels.release, 'kube-prometheus-stack');
        assert.deepEqual(monitor.spec.namespaceSelector, { matchNames: [NAMESPACE] });
        const selected = ofKind(objects, 'Service').filter((candidate) =>
          Object.entries(monitor.spec.selector.matchLabels as Record<string, string>).every(
            ([key, value]) => candidate.metadata.labels[key] === value,
          ),
        );
        assert.deepEqual(
          selected.map((candidate) => candidate.metadata.name),
          [service.metadata.name],
        );
        assert.deepEqual(monitor.spec.endpoints, [
          { port: 'metrics', path: '/metrics', scheme: 'http', interval: '30s' },
        ]);
      }
    });
  });

  describe('CustomResourceDefinitions', () => {
    const crds = (): KubeObject[] => ofKind(objectsOf('defaults'), 'CustomResourceDefinition');
    const crd = (name: string): KubeObject => only(objectsOf('defaults'), 'CustomResourceDefinition', name);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const schemaOf = (definition: KubeObject): any => definition.spec.versions[0].schema.openAPIV3Schema;

    it('vdusevolumes and vdusesnapshots: cluster-scoped, v1alpha1 served and stored, with status', () => {
      assert.deepEqual(
        crds()
          .map((definition) => definition.metadata.name)
          .sort(),
        ['vdusesnapshots.csi.vduse.dev', 'vdusevolumes.csi.vduse.dev'],
      );
      for (const definition of crds()) {
        assert.equal(definition.spec.group, 'csi.vduse.dev');
        assert.equal(definition.spec.scope, 'Cluster');
        assert.equal(definition.spec.versions.length, 1);
        const [version] = definition.spec.versions;
        assert.equal(version.name, 'v1alpha1');
        assert.equal(version.served, true);
        assert.equal(version.storage, true);
        assert.deepEqual(version.subresources, { status: {} });
      }
    });

    it('structural schemas', () => {
      for (const definition of crds())
        assert.deepEqual(structuralProblems(schemaOf(definition)), [], definition.metadata.name);
    });

    it('printer columns point at fields of the schema', () => {
      const columns = (name: string): string[] =>
        crd(name).spec.versions[0].additionalPrinterColumns.map((column: Container) => column.name);
      assert.deepEqual(columns('vdusevolumes.csi.vduse.dev'), ['Size', 'Node', 'Phase', 'Device', 'Age']);
      for (const definition of crds()) {
        for (const column of definition.spec.versions[0].additionalPrinterColumns)
          assert.ok(
            schemaAt(schemaOf(definition), column.jsonPath),
            `${definition.metadata.name}: ${column.jsonPath}`,
          );
      }
    });

    it('fields the controller and node agent rely on', () => {
      const volume = schemaOf(crd('vdusevolumes.csi.vduse.dev'));
      assert.deepEqual(volume.properties.spec.required, ['name', 'capacityBytes', 'nodeId', 'parameters']);
      assert.equal(volume.properties.spec.properties.capacityBytes.format, 'int64');
      assert.deepEqual(volume.properties.status.properties.phase.enum, [
        'Pending',
        'Creating',
        'Ready',
        'Resizing',
        'Deleting',
        'Failed',
      ]);
      assert.deepEqual(Object.keys(volume.properties.status.properties).sort(), [
        'capacityBytes',
        'conditions',
        'device',
        'message',
        'observedGeneration',
        'phase',
      ]);
      const snapshot = schemaOf(crd('vdusesnapshots.csi.vduse.dev'));
      assert.deepEqual(snapshot.properties.spec.required, ['name', 'sourceVolumeId', 'nodeId']);
      assert.deepEqual(Object.keys(snapshot.properties.status.properties).sort(), [
        'creationTime',
        'message',
        'phase',
        'readyToUse',
        'sizeBytes',
      ]);
    });

    const VOLUME = {
      apiVersion: 'csi.vduse.dev/v1alpha1',
      kind: 'VduseVolume',
      metadata: { name: `vol-${'0123456789abcdef'.repeat(2)}` },
      spec: {
        name: 'pvc-9b1c4d5e-1f2a-4b3c-8d4e-5f6a7b8c9d0e',
        capacityBytes: 10 * 1024 ** 3,
        nodeId: 'worker-1',
        parameters: { queues: 2, queueSize: 256, blockSize: 4096, overcommitRatio: 1, provisioning: 'thin' },
        source: { kind: 'snapshot', id: `snap-${'fedcba9876543210'.repeat(2)}` },
        pvc: { name: 'data', namespace: 'default' },
      },
      // As the node agent writes it: only the conditions it writes (conditions.ts, image-check.ts).
      status: {
        phase: 'Ready',
        capacityBytes: 10 * 1024 ** 3,
        device: '/dev/vda',
        message: '',
        observedGeneration: 1,
        conditions: [
          {
            type: READY,
            status: 'True',
            observedGeneration: 1,
            lastTransitionTime: '2026-11-22T04:00:00.000Z',
            reason: 'Ready',
            message: 'Ready',
          },
          {
            type: IMAGE_HEALTHY,
            status: 'True',
            observedGeneration: 1,
            lastTransitionTime: '2026-11-22T04:00:00.000Z',
            reason: 'ImagePresent',
            message: `the image has the ${10 * 1024 ** 3} bytes it was made with`,
          },
        ],
      },
    };

    it('accepts a well-formed VduseVolume and VduseSnapshot, refuses malformed ones', () => {
      const volumes = customResourceValidator(schemaOf(crd('vdusevolumes.csi.vduse.dev')));
      assert.deepEqual(volumes(VOLUME), []);
      const broken: Array<[string, unknown]> = [
        ['unknown phase', { ...VOLUME, status: { ...VOLUME.status, phase: 'Running' } }],
        ['capacity as a string', { ...VOLUME, spec: { ...VOLUME.spec, capacityBytes: '10Gi' } }],
        [
          'queue size not a power of two',
          { ...VOLUME, spec: { ...VOLUME.spec, parameters: { queues: 1, queueSize: 100, blockSize: 512 } } },
        ],
        [
          'unknown source kind',
          { ...VOLUME, spec: { ...VOLUME.spec, source: { kind: 'backup', id: VOLUME.spec.source.id } } },
        ],
        ['unknown spec field', { ...VOLUME, spec: { ...VOLUME.spec, size: 1 } }],
        ['no nodeId', { ...VOLUME, spec: { ...VOLUME.spec, nodeId: undefined } }],
      ];
      for (const [what, object] of broken)
        assert.notDeepEqual(volumes(JSON.parse(JSON.stringify(object))), [], `accepted: ${what}`);

      const snapshots = customResourceValidator(schemaOf(crd('vdusesnapshots.csi.vduse.dev')));
      const snapshot = {
        apiVersion: 'csi.vduse.dev/v1alpha1',
        kind: 'VduseSnapshot',
        metadata: { name: VOLUME.spec.source.id },
        spec: { name: 'snapshot-6f1e', sourceVolumeId: VOLUME.metadata.name, nodeId: 'worker-1' },
        status: { phase: 'Ready', sizeBytes: 1024, readyToUse: true, creationTime: '2026-11-22T04:00:00Z' },
      };
      assert.deepEqual(snapshots(snapshot), []);
      assert.notDeepEqual(
        snapshots({ ...snapshot, spec: { ...snapshot.spec, sourceVolumeId: 'pvc-1' } }),
        [],
      );
      assert.notDeepEqual(snapshots({ ...snapshot, status: { ...snapshot.status, readyToUse: 'yes' } }), []);
    });
  });

  describe('the validator itself', () => {
    const deployment = (): KubeObject => structuredClone(only(objectsOf('defaults'), 'Deployment'));

    it('refuses an unknown field, a wrong type, a missing required field and an unknown kind', () => {
      const unknown = deployment();
      unknown.spec.template.spec.containers[0].imagePullPolicyy = 'Always';
      assert.match(validateKubernetesObject(unknown).join('\n'), /unknown field "imagePullPolicyy"/);
      const wrongType = deployment();
      wrongType.spec.replicas = 'one';
      assert.match(validateKubernetesObject(wrongType).join('\n'), /\/spec\/replicas/);
      const missing = deployment();
      delete missing.spec.template.spec.containers[1].name;
      assert.match(validateKubernetesObject(missing).join('\n'), /name/);
      const outOfRange = deployment();
      outOfRange.spec.template.spec.containers[0].ports[0].containerPort = 2 ** 40;
      assert.notDeepEqual(validateKubernetesObject(outOfRange), []);
      assert.throws(
        () => validateKubernetesObject({ ...deployment(), apiVersion: 'extensions/v1beta1' }),
        /no schema for extensions\/v1beta1\/Deployment/,
      );
    });

    it('refuses a VolumeSnapshot with two sources', () => {
      const snapshot = {
        apiVersion: 'snapshot.storage.k8s.io/v1',
        kind: 'VolumeSnapshot',
        metadata: { name: 'two' },
        spec: { source: { persistentVolumeClaimName: 'a', volumeSnapshotContentName: 'b' } },
      } as KubeObject;
      assert.notDeepEqual(validateKubernetesObject(snapshot), []);
    });
  });

  describe('manifests/', () => {
    it('equals a fresh render of the default values (regenerate: node dist/test/support/chart.js write-manifests)', () => {
      const expected = manifestsText();
      const actual = readFileSync(MANIFESTS_FILE, 'utf8');
      assert.ok(actual === expected, 'manifests/vduse-csi.yaml is stale: regenerate it');
    });

    it('holds only manifests/vduse-csi.yaml, whose objects all validate', () => {
      assert.deepEqual(readdirSync(join(ROOT, 'manifests')), ['vduse-csi.yaml']);
      const objects = parseObjects(readFileSync(MANIFESTS_FILE, 'utf8'));
      assert.equal(objects[0]!.kind, 'Namespace');
      assert.equal(objects[1]!.kind, 'CustomResourceDefinition');
      for (const object of objects)
        assert.deepEqual(validateKubernetesObject(object), [], `${object.kind} ${object.metadata.name}`);
    });
  });

  describe('examples/', () => {
    const files = (): string[] =>
      readdirSync(join(ROOT, 'examples'))
        .filter((file) => file.endsWith('.yaml') && !file.endsWith('.patch.yaml'))
        .sort();

    it('every object validates; claims and snapshots name what the chart makes', () => {
      const chart = objectsOf('defaults, cluster with the snapshot API');
      const classes = new Set(
        ofKind(chart, 'StorageClass').map((storageClass) => storageClass.metadata.name),
      );
      const snapshotClass = only(chart, 'VolumeSnapshotClass').metadata.name;
      const objects = files().flatMap((file) =>
        parseObjects(readFileSync(join(ROOT, 'examples', file), 'utf8')).map((object) => ({ file, object })),
      );
      assert.ok(objects.length >= 7, `only ${objects.length} objects in examples/`);
      const named = (kind: string): Set<string> =>
        new Set(
          objects.filter(({ object }) => object.kind === kind).map(({ object }) => object.metadata.name),
        );
      const claims = named('PersistentVolumeClaim');
      const snapshots = named('VolumeSnapshot');
      for (const { file, object } of objects) {
        const where = `examples/${file}: ${object.kind} ${object.metadata.name}`;
        assert.deepEqual(validateKubernetesObject(object), [], where);
        if (object.kind === 'PersistentVolumeClaim') {
          assert.ok(
            classes.has(object.spec.storageClassName),
            `${where}: class ${object.spec.storageClassName}`,
          );
          const source = object.spec.dataSource;
          if (source) assert.ok(source.kind === 'VolumeSnapshot' && snapshots.has(source.name), where);
        }
        if (object.kind === 'VolumeSnapshot') {
          assert.equal(object.spec.volumeSnapshotClassName, snapshotClass, where);
          assert.ok(claims.has(object.spec.source.persistentVolumeClaimName), where);
        }
        if (object.kind === 'Pod') {
          for (const volume of object.spec.volumes)
            assert.ok(claims.has(volume.persistentVolumeClaim.claimName), `${where}: claim`);
        }
      }
      for (const kind of ['PersistentVolumeClaim', 'Pod', 'VolumeSnapshot'])
        assert.ok(named(kind).size > 0, kind);
      assert.ok(
        objects.some(({ object }) => object.spec?.volumeMode === 'Block'),
        'no Block claim',
      );
      assert.ok(
        objects.some(
          ({ object }) =>
            object.kind === 'Pod' && object.spec.containers.some((c: Container) => c.volumeDevices),
        ),
        'no pod with volumeDevices',
      );
    });

    it('the expansion patch grows the filesystem example, and the result validates', () => {
      const patch = parseObjects(readFileSync(join(ROOT, 'examples', 'expand.patch.yaml'), 'utf8'))[0]!;
      const claim = parseObjects(readFileSync(join(ROOT, 'examples', 'filesystem.yaml'), 'utf8')).find(
        (object) => object.kind === 'PersistentVolumeClaim',
      )!;
      assert.equal(claim.spec.resources.requests.storage, '1Gi');
      const patched = structuredClone(claim);
      patched.spec.resources.requests = {
        ...patched.spec.resources.requests,
        ...patch.spec.resources.requests,
      };
      assert.deepEqual(Object.keys(patch), ['spec']);
      assert.equal(patched.spec.resources.requests.storage, '2Gi');
      assert.deepEqual(validateKubernetesObject(patched), []);
    });
  });
});
