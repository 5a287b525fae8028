import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { mkdirSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { CsiHarness, GiB, MiB, Reply } from '../support/csi-harness';
import { FakeKubeApi } from '../support/fake-kube-api';
import { SUITE_VOLUME_PARAMETERS, expectDoneOrNotFound, fakeVolumeId } from '../support/sanity-suite';
import { SmallFilesystem } from '../support/small-filesystem';
import { requireRoot } from '../support/skips';

/*
 * What the kubernetes-csi sanity suite (csi-test v5.4.0, CSI spec 1.12) asks of the Identity and
 * Controller services, case by case: the requests it sends (its default 10 GiB volume size, the test
 * volume parameters SUITE_VOLUME_PARAMETERS, empty secrets, a mount capability without fs_type), what it asserts of the answers,
 * and its cleanup after every case (for each volume it made, newest first: NodeUnpublishVolume and
 * NodeUnstageVolume answering OK or NOT_FOUND, then DeleteVolume; for each snapshot DeleteSnapshot;
 * a volume or snapshot made twice is deleted twice). The data directory sits on a filesystem with
 * less free space than one such volume, as on a small test node: images are sparse.
 *
 * The suite runs against one socket serving everything and against a controller socket and a node
 * socket (where it asks Identity questions of both), each with either store.
 */

const VOLUME_BYTES = 10 * GiB;
const EXPANDED_BYTES = VOLUME_BYTES + GiB;
const MAX_NAME_LENGTH = 128;
const FAKE_INVALID_VOLUME_ID = 'fake-vol-id';

/** One suffix for the whole run, as csi-sanity does: later cases reuse the names of earlier ones. */
const RUN_SUFFIX = `-${randomBytes(4).toString('hex').toUpperCase()}-${randomBytes(4).toString('hex').toUpperCase()}`;
const unique = (prefix: string): string => prefix + RUN_SUFFIX;
const uniqueOfLength = (prefix: string, length: number): string => unique(prefix).padEnd(length, 'x');

const capability = (mode = 'SINGLE_NODE_WRITER'): object => ({ mount: {}, access_mode: { mode } });

/** The suite's usual CreateVolume: its test size as both required and limit bytes. */
function volumeRequest(name: string): Record<string, unknown> {
  return {
    name,
    volume_capabilities: [capability()],
    capacity_range: { required_bytes: VOLUME_BYTES, limit_bytes: VOLUME_BYTES },
    parameters: { ...SUITE_VOLUME_PARAMETERS },
    secrets: {},
  };
}

/** A CreateVolume with required bytes only, as several cases send it. */
function volumeRequestAtLeast(name: string): Record<string, unknown> {
  return { ...volumeRequest(name), capacity_range: { required_bytes: VOLUME_BYTES } };
}

const snapshotRequest = (name: string, sourceVolumeId: string): object => ({
  name,
  source_volume_id: sourceVolumeId,
  parameters: {},
  secrets: {},
});

/** The sockets csi-sanity dials: --csi.endpoint (node) and --csi.controllerendpoint. */
interface Plugins {
  node: CsiHarness;
  controller: CsiHarness;
  /** Every socket it asks Identity questions of. */
  identities: CsiHarness[];
  stop(): Promise<void>;
}

type Store = 'local' | 'kubernetes';

async function onePlugin(root: string, store: Store): Promise<Plugins> {
  const csi = await CsiHarness.start({ mode: 'all', store, root });
  return { node: csi, controller: csi, identities: [csi], stop: () => csi.stop() };
}

/**
 * A controller plugin and a node plugin on their own sockets. With the local store they share the
 * node's data and state directories, as on one host; with the kubernetes store only the API server.
 */
async function separatePlugins(root: string, store: Store): Promise<Plugins> {
  const kubeApi = store === 'kubernetes' ? await FakeKubeApi.start() : undefined;
  const started: CsiHarness[] = [];
  const stop = async (): Promise<void> => {
    for (const harness of started.reverse()) await harness.stop();
    await kubeApi?.stop();
  };
  try {
    for (const mode of ['node', 'controller'] as const) {
      mkdirSync(join(root, mode));
      if (store === 'local' && mode === 'controller') shareDirectories(join(root, 'node'), join(root, mode));
      started.push(await CsiHarness.start({ mode, store, kubeApi, root: join(root, mode) }));
    }
  } catch (error) {
    await stop();
    throw error;
  }
  const [node, controller] = started as [CsiHarness, CsiHarness];
  return { node, controller, identities: [node, controller], stop };
}

/** The harness keeps data and state under its root: `to` gets those of `from`. */
function shareDirectories(from: string, to: string): void {
  for (const dir of ['data', 'state']) {
    mkdirSync(join(from, dir), { recursive: true });
    symlinkSync(join(from, dir), join(to, dir));
  }
}

const LAYOUTS: [string, (root: string) => Promise<Plugins>][] = [
  ['one socket, local store', (root) => onePlugin(root, 'local')],
  ['one socket, kubernetes store', (root) => onePlugin(root, 'kubernetes')],
  ['controller and node sockets, local store', (root) => separatePlugins(root, 'local')],
  ['controller and node sockets, kubernetes store', (root) => separatePlugins(root, 'kubernetes')],
];

/** A tmpfs smaller than one sanity volume, when this process may mount (root). */
const SMALL_FILESYSTEM_BYTES = 512 * MiB;

function assertSnapshotInfo(snapshot: Reply): void {
  assert.ok(snapshot, 'a snapshot in the answer');
  assert.ok(snapshot.snapshot_id, 'snapshot_id');
  assert.ok(snapshot.source_volume_id, 'source_volume_id');
  assert.ok(snapshot.creation_time && snapshot.creation_time.seconds > 0, 'creation_time');
}

/**
 * What a case made, undone afterwards the way csi-sanity does it. Its ExpandVolume cases have no
 * node client and skip the node calls.
 */
class Resources {
  private made: { kind: 'volume' | 'snapshot'; id: string }[] = [];

  constructor(
    private readonly plugins: Plugins,
    private readonly withNode: boolean,
  ) {}

  async createVolume(request: object): Promise<Reply> {
    const reply = await this.plugins.controller.call('controller', 'CreateVolume', request);
    assert.ok(reply.volume?.volume_id, 'volume_id in the answer');
    this.made.push({ kind: 'volume', id: reply.volume.volume_id });
    return reply;
  }

  async deleteVolume(id: string): Promise<void> {
    await this.plugins.controller.call('controller', 'DeleteVolume', { volume_id: id, secrets: {} });
    this.forget(id);
  }

  async createSnapshot(request: object): Promise<Reply> {
    const reply = await this.plugins.controller.call('controller', 'CreateSnapshot', request);
    assertSnapshotInfo(reply.snapshot);
    this.made.push({ kind: 'snapshot', id: reply.snapshot.snapshot_id });
    return reply;
  }

  async deleteSnapshot(id: string): Promise<void> {
    await this.plugins.controller.call('controller', 'DeleteSnapshot', { snapshot_id: id, secrets: {} });
    this.forget(id);
  }

  /** A volume of the usual request, and a snapshot of it. */
  async snapshotOfNewVolume(volumeName: string, snapshotName: string): Promise<Reply> {
    const { volume } = await this.createVolume(volumeRequest(volumeName));
    return this.createSnapshot(snapshotRequest(snapshotName, volume.volume_id));
  }

  async cleanup(): Promise<void> {
    const failures: string[] = [];
    for (const { kind, id } of this.made.reverse()) {
      try {
        if (kind === 'volume') await this.cleanupVolume(id);
        else await this.plugins.controller.call('controller', 'DeleteSnapshot', { snapshot_id: id });
      } catch (error) {
        failures.push(`${kind} ${id}: ${(error as Error).message}`);
      }
    }
    this.made = [];
    assert.deepEqual(failures, [], 'cleanup failed');
  }

  private async cleanupVolume(id: string): Promise<void> {
    if (this.withNode) {
      const node = this.plugins.node;
      const target = join(node.root, 'csi-mount', 'target');
      await expectDoneOrNotFound(node, 'NodeUnpublishVolume', { volume_id: id, target_path: target });
      const { capabilities } = await node.call('node', 'NodeGetCapabilities');
      if (capabilities.some((c: Reply) => c.rpc?.type === 'STAGE_UNSTAGE_VOLUME')) {
        const staging = join(node.root, 'csi-staging');
        await expectDoneOrNotFound(node, 'NodeUnstageVolume', {
          volume_id: id,
          staging_target_path: staging,
        });
      }
    }
    await this.plugins.controller.call('controller', 'DeleteVolume', { volume_id: id, secrets: {} });
  }

  private forget(id: string): void {
    const index = this.made.findIndex((entry) => entry.id === id);
    if (index >= 0) this.made.splice(index, 1);
  }
}

describe('csi-sanity v5.4.0: Identity and Controller cases', function () {
  this.timeout(120_000);
  const filesystem = new SmallFilesystem(SMALL_FILESYSTEM_BYTES, 'vduse-csi-sanity-');
  before(() => filesystem.create());
  after(() => filesystem.remove());

  for (const [layout, start] of LAYOUTS) describeLayout(layout, start, filesystem);
});

function describeLayout(
  layout: string,
  start: (root: string) => Promise<Plugins>,
  filesystem: SmallFilesystem,
): void {
  describe(layout, () => {
    let plugins: Plugins;
    let r: Resources;
    const controller = (method: string, request: object = {}): Promise<Reply> =>
      plugins.controller.call('controller', method, request);
    const expectController = (method: string, request: object, code: keyof typeof status): Promise<string> =>
      plugins.controller.expectCode('controller', method, request, code);
    const imageBlocks = (kind: string, id: string): number =>
      statSync(join(plugins.node.options.dataDir, kind, `${id}.img`)).blocks * 512;

    before(async () => {
      const root = join(filesystem.dir, layout.replace(/\W+/g, '-'));
      mkdirSync(root);
      plugins = await start(root);
      for (const dir of ['csi-mount', 'csi-staging']) mkdirSync(join(plugins.node.root, dir));
    });
    after(() => plugins?.stop());

    /** Every case leaves nothing behind once its cleanup ran. */
    afterEach(async () => {
      await r.cleanup();
      assert.deepEqual((await controller('ListVolumes')).entries, []);
      assert.deepEqual((await controller('ListSnapshots')).entries, []);
    });

    const withNodeClient = (): void => {
      beforeEach(() => {
        r = new Resources(plugins, true);
      });
    };

    describe('Identity Service', () => {
      withNodeClient();

      it('GetPluginCapabilities: only known services and expansion modes, on every socket', async () => {
        for (const identity of plugins.identities) {
          const { capabilities } = await identity.call('identity', 'GetPluginCapabilities');
          for (const entry of capabilities) {
            if (entry.service)
              assert.ok(
                [
                  'CONTROLLER_SERVICE',
                  'VOLUME_ACCESSIBILITY_CONSTRAINTS',
                  'GROUP_CONTROLLER_SERVICE',
                ].includes(entry.service.type),
                entry.service.type,
              );
            else
              assert.ok(['ONLINE', 'OFFLINE'].includes(entry.volume_expansion?.type), JSON.stringify(entry));
          }
        }
      });

      it('Probe: answers without an error on every socket (ready or not)', async () => {
        for (const identity of plugins.identities) {
          const reply = await identity.call('identity', 'Probe');
          if (reply.ready) assert.equal(typeof reply.ready.value, 'boolean');
        }
      });

      it('GetPluginInfo: a name of at most 63 characters, starting and ending with a letter', async () => {
        for (const identity of plugins.identities) {
          const { name } = await identity.call('identity', 'GetPluginInfo');
          assert.match(name, /^[a-zA-Z][A-Za-z0-9.\-_]{0,61}[a-zA-Z]$/);
        }
      });
    });

    describe('Controller Service', () => {
      withNodeClient();

      it('ControllerGetCapabilities: only capabilities the suite knows', async () => {
        const known = [
          'CREATE_DELETE_VOLUME',
          'PUBLISH_UNPUBLISH_VOLUME',
          'LIST_VOLUMES',
          'GET_CAPACITY',
          'CREATE_DELETE_SNAPSHOT',
          'LIST_SNAPSHOTS',
          'PUBLISH_READONLY',
          'CLONE_VOLUME',
          'EXPAND_VOLUME',
          'MODIFY_VOLUME',
          'LIST_VOLUMES_PUBLISHED_NODES',
          'GET_VOLUME',
          'VOLUME_CONDITION',
          'SINGLE_NODE_MULTI_WRITER',
        ];
        for (const { rpc } of (await controller('ControllerGetCapabilities')).capabilities)
          assert.ok(known.includes(rpc?.type), `unknown capability ${JSON.stringify(rpc)}`);
      });

      it('advertises what the cases below need, and not what would run the skipped ones', async () => {
        const types = (await controller('ControllerGetCapabilities')).capabilities.map(
          (c: Reply) => c.rpc.type,
        );
        for (const needed of [
          'CREATE_DELETE_VOLUME',
          'LIST_VOLUMES',
          'GET_CAPACITY',
          'CREATE_DELETE_SNAPSHOT',
          'LIST_SNAPSHOTS',
          'CLONE_VOLUME',
          'EXPAND_VOLUME',
        ])
          assert.ok(types.includes(needed), needed);
        // ControllerPublishVolume, the volume lifecycle, ControllerUnpublishVolume, the readonly
        // publish case and ModifyVolume (also CreateVolume with mutable parameters) are skipped.
        for (const skipped of ['PUBLISH_UNPUBLISH_VOLUME', 'PUBLISH_READONLY', 'MODIFY_VOLUME'])
          assert.ok(!types.includes(skipped), skipped);
      });

      describe('GetCapacity', () => {
        it('answers an empty request', async () => {
          const reply = await controller('GetCapacity', {});
          assert.equal(typeof reply.available_capacity, 'number');
        });

        it('reports less than one sanity volume by default, and such volumes in the overcommitting class', async function () {
          if (!filesystem.mounted) requireRoot(this, 'mounting the small filesystem');
          const { available_capacity } = await controller('GetCapacity', {});
          assert.ok(available_capacity <= SMALL_FILESYSTEM_BYTES, `${available_capacity} bytes free`);
          const thin = await controller('GetCapacity', { parameters: SUITE_VOLUME_PARAMETERS });
          assert.ok(thin.available_capacity > VOLUME_BYTES, `${thin.available_capacity} bytes available`);
          await expectController(
            'CreateVolume',
            { ...volumeRequest(unique('sanity-small-disk-default')), parameters: {} },
            'RESOURCE_EXHAUSTED',
          );
          const { volume } = await r.createVolume(volumeRequest(unique('sanity-small-disk')));
          assert.equal(volume.capacity_bytes, VOLUME_BYTES);
          assert.ok(imageBlocks('volumes', volume.volume_id) < MiB, 'the image is sparse');
        });
      });

      describe('ListVolumes', () => {
        it('should return appropriate values (no optional values added)', async () => {
          await r.createVolume(volumeRequest(unique('sanity-list')));
          const { entries } = await controller('ListVolumes', {});
          assert.equal(entries.length, 1);
          for (const entry of entries) assert.ok(entry.volume.volume_id);
        });

        it('should fail when an invalid starting_token is passed', async () => {
          await expectController('ListVolumes', { starting_token: 'invalid-token' }, 'ABORTED');
        });

        it('check the presence of new volumes and absence of deleted ones in the volume list', async () => {
          const before = (await controller('ListVolumes', {})).entries.length;
          const { volume } = await r.createVolume({
            name: 'sanity',
            volume_capabilities: [capability()],
            parameters: { ...SUITE_VOLUME_PARAMETERS },
            secrets: {},
          });
          assert.equal((await controller('ListVolumes', {})).entries.length, before + 1);
          await r.deleteVolume(volume.volume_id);
          assert.equal((await controller('ListVolumes', {})).entries.length, before);
        });
      });

      describe('CreateVolume', () => {
        it('should fail when no name is provided', async () => {
          await expectController(
            'CreateVolume',
            { parameters: { ...SUITE_VOLUME_PARAMETERS }, secrets: {} },
            'INVALID_ARGUMENT',
          );
        });

        it('should fail when no volume capabilities are provided', async () => {
          const request = {
            name: unique('sanity-controller-create-no-volume-capabilities'),
            parameters: { ...SUITE_VOLUME_PARAMETERS },
          };
          await expectController('CreateVolume', request, 'INVALID_ARGUMENT');
        });

        it('should return appropriate values SingleNodeWriter NoCapacity', async () => {
          await r.createVolume(volumeRequestAtLeast(unique('sanity-controller-create-single-no-capacity')));
        });

        it('should return appropriate values SingleNodeWriter WithCapacity 1Gi (without skipping)', async () => {
          const name = unique('sanity-controller-create-single-with-capacity');
          const { volume } = await r.createVolume(volumeRequestAtLeast(name));
          assert.ok(volume.capacity_bytes >= VOLUME_BYTES);
        });

        it('should not fail when requesting to create a volume with already existing name and same capacity', async () => {
          const request = volumeRequestAtLeast(unique('sanity-controller-create-twice'));
          const first = await r.createVolume(request);
          const second = await r.createVolume(request);
          assert.ok(
            first.volume.capacity_bytes >= VOLUME_BYTES && second.volume.capacity_bytes >= VOLUME_BYTES,
          );
          assert.equal(second.volume.volume_id, first.volume.volume_id);
        });

        it('should fail when requesting to create a volume with already existing name and different capacity', async () => {
          const name = unique('sanity-controller-create-twice-different');
          await r.createVolume(volumeRequest(name));
          const twice = { required_bytes: 2 * VOLUME_BYTES, limit_bytes: 2 * VOLUME_BYTES };
          await expectController(
            'CreateVolume',
            { ...volumeRequest(name), capacity_range: twice },
            'ALREADY_EXISTS',
          );
        });

        it('should not fail when creating volume with maximum-length name', async () => {
          const name = uniqueOfLength('sanity-controller-create-maxlen', MAX_NAME_LENGTH);
          assert.equal(name.length, MAX_NAME_LENGTH);
          const { volume } = await r.createVolume(volumeRequestAtLeast(name));
          assert.ok(volume.capacity_bytes >= VOLUME_BYTES);
        });

        it('should create volume from an existing source snapshot', async () => {
          const source = await r.createVolume(volumeRequest(unique('sanity-controller-source-vol')));
          const { snapshot } = await r.createSnapshot(
            snapshotRequest(unique('sanity-controller-snap-from-vol'), source.volume.volume_id),
          );
          assert.equal(snapshot.ready_to_use, true);
          const { volume } = await r.createVolume({
            ...volumeRequest(unique('sanity-controller-vol-from-snap')),
            volume_content_source: { snapshot: { snapshot_id: snapshot.snapshot_id } },
          });
          assert.equal(volume.content_source?.snapshot?.snapshot_id, snapshot.snapshot_id);
          assert.ok(imageBlocks('snapshots', snapshot.snapshot_id) < MiB, 'the snapshot is sparse');
          assert.ok(imageBlocks('volumes', volume.volume_id) < MiB, 'the restored volume is sparse');
        });

        it('should fail when the volume source snapshot is not found', async () => {
          const request = {
            ...volumeRequest(unique('sanity-controller-vol-from-snap')),
            volume_content_source: { snapshot: { snapshot_id: 'non-existing-snapshot-id' } },
          };
          await expectController('CreateVolume', request, 'NOT_FOUND');
        });

        it('should create volume from an existing source volume', async () => {
          const source = await r.createVolume(volumeRequest(unique('sanity-controller-source-vol')));
          const { volume } = await r.createVolume({
            ...volumeRequest(unique('sanity-controller-vol-from-vol')),
            volume_content_source: { volume: { volume_id: source.volume.volume_id } },
          });
          assert.ok(imageBlocks('volumes', volume.volume_id) < MiB, 'the clone is sparse');
        });

        it('should fail when the volume source volume is not found', async () => {
          const request = {
            ...volumeRequest(unique('sanity-controller-vol-from-snap')),
            volume_content_source: { volume: { volume_id: fakeVolumeId() } },
          };
          await expectController('CreateVolume', request, 'NOT_FOUND');
        });
      });

      describe('DeleteVolume', () => {
        it('should fail when no volume id is provided', async () => {
          await expectController('DeleteVolume', { secrets: {} }, 'INVALID_ARGUMENT');
        });

        it('should succeed when an invalid volume id is used', async () => {
          await controller('DeleteVolume', { volume_id: FAKE_INVALID_VOLUME_ID, secrets: {} });
        });

        it('should return appropriate values (no optional values added)', async () => {
          const { volume } = await r.createVolume(
            volumeRequestAtLeast(unique('sanity-controller-create-appropriate')),
          );
          await r.deleteVolume(volume.volume_id);
        });
      });

      describe('ValidateVolumeCapabilities', () => {
        it('should fail when no volume id is provided', async () => {
          await expectController('ValidateVolumeCapabilities', { secrets: {} }, 'INVALID_ARGUMENT');
        });

        it('should fail when no volume capabilities are provided', async () => {
          const { volume } = await r.createVolume(
            volumeRequestAtLeast(unique('sanity-controller-validate-nocaps')),
          );
          await expectController(
            'ValidateVolumeCapabilities',
            { volume_id: volume.volume_id },
            'INVALID_ARGUMENT',
          );
        });

        it('should return appropriate values (no optional values added)', async () => {
          const { volume } = await r.createVolume(volumeRequestAtLeast(unique('sanity-controller-validate')));
          const reply = await controller('ValidateVolumeCapabilities', {
            volume_id: volume.volume_id,
            volume_capabilities: [capability()],
            secrets: {},
          });
          assert.ok(reply.confirmed, reply.message);
          assert.ok(reply.confirmed.volume_capabilities.length > 0);
        });

        it('should fail when the requested volume does not exist', async () => {
          const request = { volume_id: fakeVolumeId(), volume_capabilities: [capability()] };
          await expectController('ValidateVolumeCapabilities', request, 'NOT_FOUND');
        });
      });
    });

    describe('ListSnapshots', () => {
      withNodeClient();
      const listed = async (request: object = {}): Promise<Reply[]> =>
        (await controller('ListSnapshots', request)).entries;

      it('should return appropriate values (no optional values added)', async () => {
        await r.snapshotOfNewVolume(
          unique('listSnapshots-volume-plain'),
          unique('listSnapshots-snapshot-plain'),
        );
        const entries = await listed();
        assert.equal(entries.length, 1);
        for (const entry of entries) assertSnapshotInfo(entry.snapshot);
      });

      /** Three snapshots of three new volumes, the middle one the case's target. */
      const targetAmongUnrelatedSnapshots = async (tag: string): Promise<Reply> => {
        await r.snapshotOfNewVolume(
          unique(`listSnapshots-volume-unrelated-${tag}-1`),
          unique(`listSnapshots-snapshot-unrelated-${tag}-1`),
        );
        const target = await r.snapshotOfNewVolume(
          unique(`listSnapshots-volume-target-${tag}`),
          unique(`listSnapshots-snapshot-target-${tag}`),
        );
        await r.snapshotOfNewVolume(
          unique(`listSnapshots-volume-unrelated-${tag}-2`),
          unique(`listSnapshots-snapshot-unrelated-${tag}-2`),
        );
        return target;
      };

      it('should return snapshots that match the specified snapshot id', async () => {
        const target = await targetAmongUnrelatedSnapshots('s');
        const entries = await listed({ snapshot_id: target.snapshot.snapshot_id });
        assert.equal(entries.length, 1);
        assertSnapshotInfo(entries[0].snapshot);
        assert.equal(entries[0].snapshot.snapshot_id, target.snapshot.snapshot_id);
      });

      it('should return empty when the specified snapshot id does not exist', async () => {
        assert.deepEqual(await listed({ snapshot_id: 'none-exist-id' }), []);
      });

      it('should return snapshots that match the specified source volume id', async () => {
        const target = await targetAmongUnrelatedSnapshots('v');
        const entries = await listed({ source_volume_id: target.snapshot.source_volume_id });
        assert.equal(entries.length, 1);
        assertSnapshotInfo(entries[0].snapshot);
        assert.equal(entries[0].snapshot.source_volume_id, target.snapshot.source_volume_id);
      });

      it('should return empty when the specified source volume id does not exist', async () => {
        assert.deepEqual(await listed({ source_volume_id: fakeVolumeId() }), []);
      });

      it('check the presence of new snapshots in the snapshot list', async () => {
        const before = (await listed()).length;
        const { snapshot } = await r.snapshotOfNewVolume(
          unique('listSnapshots-volume-3'),
          unique('listSnapshots-snapshot-3'),
        );
        assert.equal((await listed()).length, before + 1);
        await r.deleteSnapshot(snapshot.snapshot_id);
        assert.equal((await listed()).length, before);
      });

      it('should return next token when a limited number of entries are requested', async () => {
        const before = (await listed()).length;
        for (let i = 1; i <= 5 - before; i++)
          await r.snapshotOfNewVolume(unique(`volume${i}`), unique(`snapshot${i}`));
        const total = Math.max(before, 5);
        const page = await controller('ListSnapshots', { max_entries: 2 });
        assert.equal(page.entries.length, 2);
        assert.equal((await listed({ starting_token: page.next_token })).length, total - 2);
      });
    });

    describe('DeleteSnapshot', () => {
      withNodeClient();

      it('should fail when no snapshot id is provided', async () => {
        await expectController('DeleteSnapshot', { secrets: {} }, 'INVALID_ARGUMENT');
      });

      it('should succeed when an invalid snapshot id is used', async () => {
        await controller('DeleteSnapshot', { snapshot_id: 'reallyfakesnapshotid', secrets: {} });
      });

      it('should return appropriate values (no optional values added)', async () => {
        await r.snapshotOfNewVolume(unique('DeleteSnapshot-volume-1'), unique('DeleteSnapshot-snapshot-1'));
      });
    });

    describe('CreateSnapshot', () => {
      withNodeClient();

      it('should fail when no name is provided', async () => {
        await expectController('CreateSnapshot', { source_volume_id: 'testId' }, 'INVALID_ARGUMENT');
      });

      it('should fail when no source volume id is provided', async () => {
        await expectController('CreateSnapshot', { name: 'name' }, 'INVALID_ARGUMENT');
      });

      it('should succeed when requesting to create a snapshot with already existing name and same source volume ID', async () => {
        const { volume } = await r.createVolume(volumeRequest(unique('CreateSnapshot-volume-1')));
        const request = snapshotRequest(unique('CreateSnapshot-snapshot-1'), volume.volume_id);
        const first = await r.createSnapshot(request);
        const again = await r.createSnapshot(request);
        assert.equal(again.snapshot.snapshot_id, first.snapshot.snapshot_id);
      });

      it('should fail when requesting to create a snapshot with already existing name and different source volume ID', async () => {
        const name = unique('CreateSnapshot-snapshot-2');
        await r.snapshotOfNewVolume(unique('CreateSnapshot-volume-2'), name);
        const { volume } = await r.createVolume(volumeRequest(unique('CreateSnapshot-volume-3')));
        await expectController('CreateSnapshot', snapshotRequest(name, volume.volume_id), 'ALREADY_EXISTS');
      });

      it('should succeed when creating snapshot with maximum-length name', async () => {
        const { volume } = await r.createVolume(volumeRequest(unique('CreateSnapshot-volume-maxlen-name')));
        const request = snapshotRequest(
          uniqueOfLength('CreateSnapshot-snapshot-maxlen', MAX_NAME_LENGTH),
          volume.volume_id,
        );
        await r.createSnapshot(request);
        await r.createSnapshot(request);
      });
    });

    describe('ExpandVolume (no node client)', () => {
      beforeEach(() => {
        r = new Resources(plugins, false);
      });

      it('should fail if no volume id is given', async () => {
        const request = {
          volume_id: '',
          capacity_range: { required_bytes: EXPANDED_BYTES },
          volume_capability: capability(),
        };
        await expectController('ControllerExpandVolume', request, 'INVALID_ARGUMENT');
      });

      it('should fail if no capacity range is given', async () => {
        await expectController('ControllerExpandVolume', { volume_id: '', secrets: {} }, 'INVALID_ARGUMENT');
      });

      it('should work: the answer is exactly the requested size', async () => {
        const { volume } = await r.createVolume(volumeRequestAtLeast(unique('sanity-expand-volume')));
        const reply = await controller('ControllerExpandVolume', {
          volume_id: volume.volume_id,
          capacity_range: { required_bytes: EXPANDED_BYTES },
          volume_capability: capability(),
          secrets: {},
        });
        assert.equal(reply.capacity_bytes, EXPANDED_BYTES);
        assert.ok(imageBlocks('volumes', volume.volume_id) < MiB, 'the grown image is sparse');
      });
    });
  });
}
