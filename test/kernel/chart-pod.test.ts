import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ServiceError } from '@grpc/grpc-js';
import {
  Published,
  VolumeKind,
  createPublished,
  stageAndPublish,
  unpublishAndUnstage,
} from '../e2e/kubelet-flow';
import { CHART_DIR, KubeObject, NAMESPACE, RELEASE, ROOT, helm, parseObjects } from '../support/chart';
import { FakeKubeApi } from '../support/fake-kube-api';
import { criImageReference, parseImageReference } from '../support/image-reference';
import { OciImage } from '../support/oci-image';
import { PodCsi, waitForSocket } from '../support/pod-csi';
import { PodNetwork } from '../support/pod-network';
import { podContainers, podTemplateOf } from '../support/pod-oci-spec';
import { PROBE_KINDS, surgePortClashes, waitForProbe } from '../support/pod-probes';
import { NodeRuntime, PodSandbox, RuncContainer } from '../support/pod-runtime';
import { selfSignedCertificate } from '../support/self-signed-cert';
import { scrape, valueOf } from '../support/prometheus-text';
import { Fields, listOf } from '../support/spec-fields';
import { assertNoDevices, requireVduse, scratchDir } from './support';

/*
 * The chart's pods as a node runs them: the image scripts/build-image.sh builds, run by runc with
 * what `helm template` gives the node DaemonSet's and the controller Deployment's containers
 * (network namespace or host network, privileges, user, mounts and propagation, env and args),
 * translated as kubelet and containerd would (test/support/pod-oci-spec.ts). The VM is the node:
 * kubelet's and the plugin's host directories are the chart's own paths (a shared tmpfs each). The
 * pods reach a fake API server over TLS through the kubernetes Service's address, as in-cluster
 * clients do. The CSI calls go to the pods' sockets, as the sidecars and kubelet make them, and a
 * workload container sees the published volume through its own mounts.
 *
 * VDUSE_CSI_CHART_DIR renders another copy of the chart (e.g. an older revision) instead.
 */
const IMAGE_ARCHIVE = join(ROOT, 'dist', 'image', 'vduse-csi.oci.tar');
const SERVICE_IP = '10.96.0.1';
const NODE = 'vm-node';
/** Generous: the VM emulates its CPUs on a busy machine. */
const START_MS = 300_000;
const WORKLOAD_IMAGE_USER = 0;

const begun = Date.now();
/** Progress on stderr as it happens: a run in the VM is slow, and a hang should show where. */
function step(what: string): void {
  console.error(`      [chart-pod +${((Date.now() - begun) / 1000).toFixed(1)}s] ${what}`);
}

function renderChart(imageName: string): KubeObject[] {
  const { repository, tag } = parseImageReference(imageName);
  if (tag === undefined) throw new Error(`the archive names its image ${imageName}, without a tag`);
  const chart = process.env.VDUSE_CSI_CHART_DIR ?? CHART_DIR;
  const args = ['template', RELEASE, chart, '--namespace', NAMESPACE];
  args.push('--set', `image.repository=${repository}`, '--set', `image.tag=${tag}`);
  const result = helm(args);
  if (result.status !== 0) throw new Error(`helm template failed:\n${result.stderr}`);
  return parseObjects(result.stdout);
}

/** The chart's one workload of `kind` for `component` (its app.kubernetes.io/component label). */
function workloadOf(objects: KubeObject[], kind: string, component: string): KubeObject {
  const found = objects.filter(
    (object) =>
      object.kind === kind &&
      (object.metadata as Fields & { labels?: Record<string, string> }).labels?.[
        'app.kubernetes.io/component'
      ] === component,
  );
  if (found.length !== 1) throw new Error(`the chart renders ${found.length} ${kind}s of ${component}`);
  return found[0]!;
}

/** The containers of a pod template that run our image (the others are sidecars from registries). */
function pluginContainers(template: Fields, imageName: string): string[] {
  return podContainers(template)
    .main.filter((container) => criImageReference(String(container.image)) === imageName)
    .map((container) => String(container.name));
}

/** The node directories the node pod's hostPath volumes name under /var/lib (kubelet's, the plugin's). */
function nodeStateDirs(template: Fields): string[] {
  const volumes = ((template.spec as Fields).volumes as Fields[] | undefined) ?? [];
  const tops = volumes
    .map((volume) => (volume.hostPath as Fields | undefined)?.path)
    .filter((path): path is string => typeof path === 'string' && path.startsWith('/var/lib/'))
    .map((path) => path.split('/').slice(0, 4).join('/'));
  return [...new Set(tops)];
}

/** A shared tmpfs at `path` (a kubelet host's mounts are shared: / is, under systemd). */
function mountSharedTmpfs(path: string): void {
  mkdirSync(path, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'mode=0755', 'tmpfs', path]);
  execFileSync('mount', ['--make-rshared', path]);
}

/**
 * A workload pod writing and reading a claim published at `target`: 1 MiB blocks into 4 slots
 * (files, or offsets of the raw device), each written with fsync and read back with O_DIRECT.
 * MODE once: every slot once; loop: until /control/stop appears; verify: check each slot against
 * the digest recorded when it was written. Progress and failures go to /control.
 */
const WORKLOAD_SCRIPT = `
set -u
n=0; errors=0
slot_path() { if [ "$KIND" = block ]; then echo /dev/xvda; else echo /data/slot$1; fi; }
read_slot() {
  if [ "$KIND" = block ]; then dd if=/dev/xvda bs=1M skip=$1 count=1 iflag=direct status=none
  else dd if=/data/slot$1 bs=1M iflag=direct status=none; fi
}
write_slot() {
  head -c 1048576 /dev/urandom > /tmp/src
  want=$(sha256sum < /tmp/src | cut -d' ' -f1)
  if [ "$KIND" = block ]; then
    dd if=/tmp/src of=/dev/xvda bs=1M seek=$1 count=1 oflag=direct conv=fsync,notrunc status=none || return 1
  else
    dd if=/tmp/src of=/data/slot$1 bs=1M conv=fsync status=none || return 1
  fi
  got=$(read_slot $1 | sha256sum | cut -d' ' -f1)
  [ "$got" = "$want" ] || { echo "slot $1: read back $got after writing $want"; return 1; }
  echo "$want" > /control/sum$1
}
case "$MODE" in
  verify)
    for slot in 0 1 2 3; do
      got=$(read_slot $slot | sha256sum | cut -d' ' -f1)
      [ "$got" = "$(cat /control/sum$slot)" ] || { echo "slot $slot: $got, not $(cat /control/sum$slot)"; errors=$((errors + 1)); }
    done ;;
  *)
    while :; do
      write_slot $((n % 4)) || { errors=$((errors + 1)); echo "error in round $n"; }
      n=$((n + 1))
      echo "$n $errors" > /control/progress.tmp && mv /control/progress.tmp /control/progress
      if [ "$MODE" = once ] && [ $n -ge 4 ]; then break; fi
      if [ -e /control/stop ]; then break; fi
    done ;;
esac
echo "$n $errors" > /control/result
[ $errors -eq 0 ]
`;

function workloadTemplate(imageName: string, kind: VolumeKind, mode: string, control: string): Fields {
  const data =
    kind === 'block'
      ? { volumeDevices: [{ name: 'data', devicePath: '/dev/xvda' }] }
      : {
          volumeMounts: [{ name: 'data', mountPath: '/data' }],
        };
  return {
    metadata: {},
    spec: {
      automountServiceAccountToken: false,
      securityContext: { runAsUser: WORKLOAD_IMAGE_USER },
      containers: [
        {
          name: 'workload',
          image: imageName,
          command: ['/bin/sh', '-c', WORKLOAD_SCRIPT],
          env: [
            { name: 'KIND', value: kind === 'block' ? 'block' : 'fs' },
            { name: 'MODE', value: mode },
          ],
          ...data,
          volumeMounts: [
            ...((data as { volumeMounts?: Fields[] }).volumeMounts ?? []),
            { name: 'control', mountPath: '/control' },
          ],
        },
      ],
      volumes: [
        { name: 'data', persistentVolumeClaim: { claimName: 'data' } },
        { name: 'control', hostPath: { path: control, type: 'Directory' } },
      ],
    },
  };
}

describe("the chart's pods run as a node runs them (runc, the built image, the rendered specs)", function () {
  this.timeout(1_800_000);
  let scratch: string;
  let objects: KubeObject[];
  let runtime: NodeRuntime;
  let network: PodNetwork | undefined;
  let api: FakeKubeApi | undefined;
  let kubeletDir: string;
  const mounted: string[] = [];
  const pods: PodSandbox[] = [];
  let nodePod: PodSandbox;
  let controllerPod: PodSandbox;
  let daemonPod: PodSandbox;
  let daemonSetOfDaemon: KubeObject;
  let node: RuncContainer;
  let controller: RuncContainer;
  let csi: PodCsi | undefined;
  const timings: Record<string, number> = {};

  const newPod = (
    workload: KubeObject | Fields,
    name: string,
    claims: Record<string, string> = {},
  ): PodSandbox => {
    const template = 'kind' in workload ? podTemplateOf(workload as KubeObject) : workload;
    const pod = PodSandbox.create(
      runtime,
      template,
      { name, namespace: NAMESPACE, uid: randomUUID() },
      claims,
    );
    pods.push(pod);
    return pod;
  };

  const dropPod = async (pod: PodSandbox): Promise<void> => {
    await pod.destroy();
    pods.splice(pods.indexOf(pod), 1);
  };

  before(async () => {
    requireVduse();
    scratch = scratchDir('chart-pod');
    let started = Date.now();
    step('reading the image archive');
    const image = OciImage.open(IMAGE_ARCHIVE, join(scratch, 'oci'));
    objects = renderChart(image.refName);
    const daemonSet = workloadOf(objects, 'DaemonSet', 'node');
    daemonSetOfDaemon = workloadOf(objects, 'DaemonSet', 'device-daemon');
    const deployment = workloadOf(objects, 'Deployment', 'controller');
    const nodeTemplate = podTemplateOf(daemonSet);
    for (const directory of nodeStateDirs(nodeTemplate)) {
      mountSharedTmpfs(directory);
      mounted.push(directory);
    }
    kubeletDir = nodeStateDirs(nodeTemplate).find((directory) => directory.endsWith('/kubelet')) ?? '';
    assert.ok(kubeletDir, 'the node pod mounts a kubelet directory');
    // What kubelet itself makes in its directory.
    for (const made of ['plugins_registry', 'plugins', 'pods'])
      mkdirSync(join(kubeletDir, made), { recursive: true });

    const certificate = selfSignedCertificate(join(scratch, 'tls'), [SERVICE_IP], ['kubernetes.default.svc']);
    network = PodNetwork.setUp(SERVICE_IP);
    api = await FakeKubeApi.start({ host: SERVICE_IP, tls: certificate });
    step('unpacking the image');
    runtime = NodeRuntime.create({
      scratch,
      kubeletDir,
      nodeName: NODE,
      image,
      network,
      apiServer: { port: api.port, caCert: certificate.cert },
    });
    timings.imageUnpackMs = Date.now() - started;

    started = Date.now();
    step(`image unpacked in ${timings.imageUnpackMs} ms; device daemon pod`);
    daemonPod = await startDaemonPod(`${daemonSetOfDaemon.metadata.name}-m4q8d`);
    step('node pod: init containers');
    nodePod = newPod(daemonSet, `${daemonSet.metadata.name}-x7k2p`);
    await nodePod.runInitContainers();
    step('node pod: starting the plugin container');
    const [nodePlugin, ...otherNode] = pluginContainers(nodeTemplate, runtime.imageName);
    assert.ok(nodePlugin && otherNode.length === 0, 'one plugin container in the node pod');
    node = nodePod.container(nodePlugin);
    await node.start();

    step('controller pod: starting the plugin container');
    controllerPod = newPod(deployment, `${deployment.metadata.name}-6b8f9c7d54-q2xkz`);
    await controllerPod.runInitContainers();
    const [controllerPlugin] = pluginContainers(podTemplateOf(deployment), runtime.imageName);
    controller = controllerPod.container(controllerPlugin!);
    await controller.start();
    await waitForSocket(node, START_MS);
    await waitForSocket(controller, START_MS);
    csi = await PodCsi.connect(node, controller, kubeletDir);
    timings.podsStartMs = Date.now() - started;
    step(`both plugins listen (${timings.podsStartMs} ms)`);
  });

  /** Starts a device daemon pod (init container, then both daemons) and waits until each is ready. */
  async function startDaemonPod(name: string): Promise<PodSandbox> {
    const pod = newPod(daemonSetOfDaemon, name);
    await pod.runInitContainers();
    const names = pluginContainers(podTemplateOf(daemonSetOfDaemon), runtime.imageName);
    assert.deepEqual(names, ['daemon-a', 'daemon-b'], 'two daemons: one serves, one stands by');
    for (const container of names) await pod.container(container).start();
    for (const container of names) await daemonReady(pod, container);
    return pod;
  }

  /** Waits until the rendered readiness probe of a daemon container passes (serving, or standing by). */
  async function daemonReady(pod: PodSandbox, name: string): Promise<void> {
    const spec = podContainers(pod.template).main.find((entry) => entry.name === name)!;
    const result = await waitForProbe('readinessProbe', spec, pod.container(name), pod.facts.podIP, START_MS);
    assert.ok(result.ok, `${name}: ${result.detail}`);
  }

  /** The role a daemon container's process reports (its role file). */
  async function roleOf(pod: PodSandbox, name: string): Promise<string> {
    const result = await pod.container(name).exec(['cat', '/tmp/daemon-role']);
    return result.code === 0 ? result.stdout.trim() : `unknown (${result.stderr.trim()})`;
  }

  /** The daemon container of `pod` that serves, once one does. */
  async function servingDaemon(pod: PodSandbox): Promise<string> {
    const deadline = Date.now() + START_MS;
    for (;;) {
      for (const name of ['daemon-a', 'daemon-b']) if ((await roleOf(pod, name)) === 'serving') return name;
      if (Date.now() > deadline) throw new Error(`no daemon of ${pod.facts.name} serves`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  afterEach(function () {
    const test = this.currentTest;
    step(`${test?.state ?? 'done'}: ${test?.title}${test?.err ? `\n${test.err.message}` : ''}`);
  });

  after(async () => {
    csi?.close();
    for (const pod of [...pods].reverse())
      await pod.destroy().catch((error: Error) => console.error(error.message));
    await api?.stop();
    network?.tearDown();
    for (const directory of mounted.reverse()) execFileSync('umount', ['-l', directory]);
    if (scratch) rmSync(scratch, { recursive: true, force: true });
    console.log(`    timings: ${JSON.stringify(timings)}`);
  });

  /** A failed CSI call, with where the plugins run and how they fare, for a message that says what went wrong. */
  const explain = async (error: unknown): Promise<Error> => {
    const grpc = error as Partial<ServiceError>;
    const where = node.spec.linux.namespaces.find((namespace) => namespace.type === 'network');
    const netns = where ? `its own network namespace (${where.path})` : `the host's network namespace`;
    const tail = async (container: RuncContainer): Promise<string> =>
      `--- ${container.name} of ${container.id} (${(await container.status()) ?? 'gone'}), log tail ---\n` +
      container.log().split('\n').slice(-15).join('\n');
    return new Error(
      `a CSI call failed; the node pod's plugin runs in ${netns}: ${grpc.details ?? String(error)}\n` +
        `${await tail(node)}\n${await tail(controller)}`,
    );
  };

  /** Runs a workload pod over a published claim until it exits (once/verify) and checks it. */
  const runWorkload = async (kind: VolumeKind, target: string, mode: 'once' | 'verify', control: string) => {
    const pod = newPod(workloadTemplate(runtime.imageName, kind, mode, control), `workload-${mode}`, {
      data: target,
    });
    const container = pod.container('workload');
    const code = await container.runToCompletion();
    const log = container.log();
    await dropPod(pod);
    assert.equal(code, 0, `the workload (${mode}) failed:\n${log}`);
    return readFileSync(join(control, 'result'), 'utf8').trim();
  };

  const controlDir = (name: string): string => {
    const directory = join(scratch, 'control', name);
    rmSync(directory, { recursive: true, force: true });
    mkdirSync(directory, { recursive: true });
    return directory;
  };

  const flow = async (kind: VolumeKind): Promise<void> => {
    const name = `pvc-${kind}-${randomUUID().slice(0, 8)}`;
    let published: Published;
    try {
      published = await createPublished(csi!, kind, name, 256);
    } catch (error) {
      throw await explain(error);
    }
    const control = controlDir(name);
    assert.equal(await runWorkload(kind, published.target, 'once', control), '4 0');
    await unpublishAndUnstage(csi!, published);
    published = await stageAndPublish(csi!, kind, published.volumeId, name);
    assert.equal(
      await runWorkload(kind, published.target, 'verify', control),
      '0 0',
      'data after unstage and stage',
    );
    await unpublishAndUnstage(csi!, published);
    await csi!.call('controller', 'DeleteVolume', { volume_id: published.volumeId });
    assertNoDevices();
  };

  it('runs the device daemons, the node and controller plugins from the rendered specs, and their probes pass', async () => {
    assert.deepEqual(
      (await Promise.all(['daemon-a', 'daemon-b'].map((name) => roleOf(daemonPod, name)))).sort(),
      ['serving', 'standby'],
    );
    for (const [pod, container] of [
      [daemonPod, daemonPod.container('daemon-a')],
      [daemonPod, daemonPod.container('daemon-b')],
      [nodePod, node],
      [controllerPod, controller],
    ] as const) {
      const spec = podContainers(pod.template).main.find((entry) => entry.name === container.name)!;
      for (const kind of PROBE_KINDS.filter((probe) => spec[probe] !== undefined)) {
        const result = await waitForProbe(kind, spec, container, pod.facts.podIP, START_MS);
        assert.ok(result.ok, result.detail);
      }
    }
    const info = await csi!.call('node', 'NodeGetInfo');
    assert.equal(info.node_id, NODE);
  });

  it('ext4: create, stage, publish, a workload pod writes and reads, unpublish, unstage, again, delete', async () => {
    await flow('ext4');
  });

  it("Block: the same with the raw device as the workload pod's volumeDevice", async () => {
    await flow('block');
  });

  it('both plugins and the serving daemon serve /metrics on their rendered metrics port, having counted the calls above', async () => {
    for (const [pod, container, method] of [
      [nodePod, node, 'NodeStageVolume'],
      [controllerPod, controller, 'CreateVolume'],
    ] as const) {
      const spec = podContainers(pod.template).main.find((entry) => entry.name === container.name)!;
      const port = listOf(spec.ports, 'ports').find((entry) => entry.name === 'metrics')?.containerPort;
      const { samples } = await scrape(`http://${pod.facts.podIP}:${String(port)}/metrics`);
      // Each flow stages twice and creates once: ext4 and Block.
      const calls = valueOf(samples, 'vduse_csi_operations_total', { method, code: 'OK' });
      assert.ok(calls >= 2, `${container.name}: ${method} OK ${calls}`);
    }
    const daemonPodSpec = (daemonSetOfDaemon.spec.template as Fields).spec as Fields;
    const port = /--metrics-address=:(\d+)/.exec(JSON.stringify(daemonPodSpec.containers))?.[1];
    assert.ok(port, 'the device daemons are given a metrics address');
    const { samples } = await scrape(`http://${daemonPod.facts.podIP}:${port}/metrics`);
    // Four stages (two flows, each staging twice): four devices added.
    const adds = valueOf(samples, 'vduse_csi_daemon_requests_total', { op: 'add', outcome: 'ok' });
    assert.ok(adds >= 4, `the serving daemon counted ${adds} adds`);
    assert.equal(valueOf(samples, 'vduse_csi_daemon_role', { role: 'serving' }), 1);
  });

  /**
   * Runs `disrupt` while a workload pod writes and reads an ext4 claim in a loop: the workload must
   * go on through it with no I/O error, and the data must read back after unstage and stage.
   * Returns how long from the disruption's start until the workload had made 3 more rounds.
   */
  const underLoad = async (label: string, disrupt: () => Promise<void>): Promise<number> => {
    const name = `pvc-${label}-${randomUUID().slice(0, 8)}`;
    let published: Published;
    try {
      published = await createPublished(csi!, 'ext4', name, 256);
    } catch (error) {
      throw await explain(error);
    }
    const control = controlDir(name);
    const pod = newPod(workloadTemplate(runtime.imageName, 'ext4', 'loop', control), 'workload-loop', {
      data: published.target,
    });
    const workload = pod.container('workload');
    await workload.start();
    const rounds = (): number => {
      const path = join(control, 'progress');
      return existsSync(path) ? Number(readFileSync(path, 'utf8').split(' ')[0]) : 0;
    };
    const waitRounds = async (count: number, what: string): Promise<void> => {
      const deadline = Date.now() + START_MS;
      while (rounds() < count) {
        if ((await workload.status()) !== 'running')
          throw new Error(`the workload stopped: ${workload.log()}`);
        if (Date.now() > deadline)
          throw new Error(`${what}: the workload made ${rounds()} rounds, not ${count}`);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    };
    await waitRounds(3, `before: ${label}`);
    const started = Date.now();
    step(`${label}: under I/O, workload at round ${rounds()}`);
    await disrupt();
    const atDisruption = rounds();
    step(`${label}: done after ${Date.now() - started} ms (workload at round ${atDisruption})`);
    await waitRounds(atDisruption + 3, `after: ${label}`);
    const toIoMs = Date.now() - started;

    step(`${label}: I/O went on (${toIoMs} ms); stopping the workload`);
    writeFileSync(join(control, 'stop'), '');
    await workload.waitStopped(START_MS);
    const [done, errors] = readFileSync(join(control, 'result'), 'utf8').trim().split(' ').map(Number);
    assert.equal(errors, 0, `I/O errors in the workload:\n${workload.log()}`);
    assert.ok(done! >= atDisruption + 3);
    await dropPod(pod);

    await unpublishAndUnstage(csi!, published);
    published = await stageAndPublish(csi!, 'ext4', published.volumeId, name);
    assert.equal(
      await runWorkload('ext4', published.target, 'verify', control),
      '0 0',
      `data after ${label}`,
    );
    await unpublishAndUnstage(csi!, published);
    await csi!.call('controller', 'DeleteVolume', { volume_id: published.volumeId });
    assertNoDevices();
    return toIoMs;
  };

  it('restarts the node plugin container (SIGKILL, as an OOM kill) under I/O: no I/O error, data intact', async () => {
    timings.pluginRestartToIoMs = await underLoad('plugin-restart', async () => {
      await node.kill('KILL');
      await node.waitStopped(60_000);
      await node.delete();
      await node.start();
      await waitForSocket(node, START_MS);
      // The old socket file stays behind a killed plugin: up is what the chart's probes say.
      const spec = podContainers(nodePod.template).main.find((entry) => entry.name === node.name)!;
      for (const kind of (['startupProbe', 'readinessProbe'] as const).filter((probe) => spec[probe]))
        await waitForProbe(kind, spec, node, nodePod.facts.podIP, START_MS);
      csi!.reconnectNode(node);
    });
  });

  it("kills the serving daemon container (SIGKILL) under I/O: the pod's other daemon takes over, the restarted one stands by", async () => {
    timings.daemonKillToIoMs = await underLoad('daemon-kill', async () => {
      const killed = await servingDaemon(daemonPod);
      const other = killed === 'daemon-a' ? 'daemon-b' : 'daemon-a';
      const container = daemonPod.container(killed);
      await container.kill('KILL');
      await container.waitStopped(60_000);
      assert.equal(await servingDaemon(daemonPod), other);
      // kubelet restarts the container: its daemon finds the other serving and stands by.
      await container.delete();
      await container.start();
      await daemonReady(daemonPod, killed);
      assert.equal(await roleOf(daemonPod, killed), 'standby');
    });
  });

  it('replaces the device daemon pod as its rolling update does (surge pod ready beside the old, then the old stopped) under I/O', async () => {
    timings.daemonPodUpdateToIoMs = await underLoad('daemon-update', async () => {
      const old = daemonPod;
      daemonPod = await startDaemonPod(`${daemonSetOfDaemon.metadata.name}-r7w2x`);
      assert.deepEqual(
        await Promise.all(['daemon-a', 'daemon-b'].map((name) => roleOf(daemonPod, name))),
        ['standby', 'standby'],
        'the new pod stands by while the old one serves',
      );
      await dropPod(old);
      await servingDaemon(daemonPod);
    });
  });

  it('translates every container of the three pods, sidecars included (nothing the runtime cannot express)', () => {
    // Sidecars come from registries this node cannot pull from, so they do not run; their specs
    // must still hold nothing the translation would have to ignore.
    for (const pod of [daemonPod, nodePod, controllerPod]) {
      const { init, main } = podContainers(pod.template);
      for (const container of [...init, ...main]) {
        const spec = pod.spec(String(container.name), runtime.imageRootfs);
        assert.ok(spec.process.args.length > 0);
      }
    }
  });

  it("has no port that a rolling update's new pod could not bind beside the old one", () => {
    const clashes = (
      [
        ['DaemonSet', 'node'],
        ['DaemonSet', 'device-daemon'],
        ['Deployment', 'controller'],
      ] as const
    ).flatMap(([kind, component]) => surgePortClashes(workloadOf(objects, kind, component)));
    assert.deepEqual(clashes, []);
  });
});
