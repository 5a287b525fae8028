import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TOPOLOGY_KEY } from '../../src/csi/topology';
import {
  CsiHarness,
  GiB,
  HarnessOptions,
  MiB,
  Reply,
  blockCapability,
  mountCapability,
} from '../support/csi-harness';
import { eventually } from '../support/eventually';
import { SmallFilesystem } from '../support/small-filesystem';
import { requireRoot } from '../support/skips';

/** The small data directory of the capacity cases. */
const DATA_BYTES = 64 * MiB;

/*
 * The Controller and Identity services over real gRPC on a unix socket, with real image files:
 * every RPC's error codes and idempotency rules as the CSI spec states them. No kernel needed.
 * The whole suite runs twice: with the single-host store (records in the state directory) and with
 * the cluster store (VduseVolume/VduseSnapshot objects in a fake Kubernetes API server, realised by
 * the node agent the plugin runs in mode all).
 */
for (const store of ['local', 'kubernetes'] as const) describeController(store);

function describeController(store: NonNullable<HarnessOptions['store']>): void {
  describe(`CSI controller over gRPC, ${store} store`, function () {
    this.timeout(30_000);
    let csi: CsiHarness;
    let counter = 0;
    const uniqueName = (): string => `pvc-${process.pid}-${++counter}`;
    const create = (request: object = {}): Promise<Reply> =>
      csi.call('controller', 'CreateVolume', {
        name: uniqueName(),
        volume_capabilities: [mountCapability()],
        capacity_range: { required_bytes: 64 * MiB },
        ...request,
      });
    const imagePath = (kind: string, id: string): string => join(csi.options.dataDir, kind, `${id}.img`);
    const writeAt = (path: string, offset: number, text: string): void => {
      const fd = openSync(path, 'r+');
      writeSync(fd, Buffer.from(text), 0, text.length, offset);
      closeSync(fd);
    };
    /**
     * A case that holds for the single-host store only: on the cluster store it is skipped, and its
     * title says why.
     */
    const localOnly = (title: string, reason: string, test: () => Promise<void>): void => {
      if (store === 'local') it(title, test);
      else it.skip(`${title} [skipped on the kubernetes store: ${reason}]`, test);
    };
    const readAt = (path: string, offset: number, length: number): string =>
      readFileSync(path)
        .subarray(offset, offset + length)
        .toString();

    beforeEach(async () => {
      csi = await CsiHarness.start({ mode: 'all', store });
    });
    afterEach(async () => {
      await csi.stop();
    });

    describe('Identity', () => {
      it('names the driver and states its capabilities', async () => {
        const info = await csi.call('identity', 'GetPluginInfo');
        assert.equal(info.name, 'csi.vduse.dev');
        assert.match(info.vendor_version, /^\d+\.\d+\.\d+/);
        const { capabilities } = await csi.call('identity', 'GetPluginCapabilities');
        const services = capabilities.filter((c: Reply) => c.service).map((c: Reply) => c.service.type);
        assert.deepEqual(services.sort(), ['CONTROLLER_SERVICE', 'VOLUME_ACCESSIBILITY_CONSTRAINTS']);
        assert.ok(capabilities.some((c: Reply) => c.volume_expansion?.type === 'ONLINE'));
      });

      it('Probe answers ready=false (not an error) where the kernel has no VDUSE', async function () {
        const { ready } = await csi.call('identity', 'Probe');
        if (statSafe('/dev/vduse/control')) this.skip();
        assert.equal(ready.value, false);
      });

      it('a controller-only plugin is ready without VDUSE and has no node service', async () => {
        await csi.stop();
        csi = await CsiHarness.start({ mode: 'controller', store });
        assert.equal((await csi.call('identity', 'Probe')).ready.value, true);
        await csi.expectCode('node', 'NodeGetInfo', {}, 'UNIMPLEMENTED');
      });

      it('serves on a socket only its owner can use', () => {
        assert.equal(statSync(csi.socketPath).mode & 0o777, 0o600);
      });
    });

    describe('CreateVolume', () => {
      it('creates a sparse image of the requested size, rounded up to the block size', async () => {
        const { volume } = await create({
          capacity_range: { required_bytes: 10 * MiB + 1 },
          parameters: { blockSize: '4096', queues: '2', 'csi.storage.k8s.io/pvc/name': 'claim' },
        });
        assert.match(volume.volume_id, /^vol-[0-9a-f]{32}$/);
        assert.equal(volume.capacity_bytes, 10 * MiB + 4096);
        assert.deepEqual(volume.volume_context, { queues: '2', queueSize: '256', blockSize: '4096' });
        assert.deepEqual(volume.accessible_topology, [{ segments: { [TOPOLOGY_KEY]: 'node-1' } }]);
        const stats = statSync(imagePath('volumes', volume.volume_id));
        assert.equal(stats.size, volume.capacity_bytes);
        assert.ok(stats.blocks * 512 < MiB, 'image is sparse');
      });

      it('defaults to 1 GiB, and to at least 300 MiB for xfs', async () => {
        assert.equal((await create({ capacity_range: null })).volume.capacity_bytes, GiB);
        const xfs = await create({
          volume_capabilities: [mountCapability('xfs')],
          capacity_range: { required_bytes: MiB },
        });
        assert.equal(xfs.volume.capacity_bytes, 300 * MiB);
      });

      it('is idempotent by name and refuses an incompatible repeat with ALREADY_EXISTS', async () => {
        const request = {
          name: uniqueName(),
          volume_capabilities: [mountCapability()],
          capacity_range: { required_bytes: 8 * MiB },
        };
        const first = await csi.call('controller', 'CreateVolume', request);
        const again = await csi.call('controller', 'CreateVolume', request);
        assert.deepEqual(again, first);
        const other = (changes: object): object => ({ ...request, ...changes });
        await csi.expectCode(
          'controller',
          'CreateVolume',
          other({ capacity_range: { required_bytes: 16 * MiB } }),
          'ALREADY_EXISTS',
        );
        await csi.expectCode(
          'controller',
          'CreateVolume',
          other({ capacity_range: { limit_bytes: 4 * MiB } }),
          'ALREADY_EXISTS',
        );
        await csi.expectCode(
          'controller',
          'CreateVolume',
          other({ parameters: { queues: '4' } }),
          'ALREADY_EXISTS',
        );
        // A retry that fits the existing size (wider range) is the same volume.
        const wider = await csi.call(
          'controller',
          'CreateVolume',
          other({ capacity_range: { required_bytes: MiB, limit_bytes: GiB } }),
        );
        assert.equal(wider.volume.volume_id, first.volume.volume_id);
      });

      it('answers INVALID_ARGUMENT to missing or unsupported fields', async () => {
        const base = { name: uniqueName(), volume_capabilities: [mountCapability()] };
        const cases: object[] = [
          { ...base, name: '' },
          { ...base, volume_capabilities: [] },
          { ...base, volume_capabilities: [mountCapability('btrfs')] },
          { ...base, volume_capabilities: [mountCapability('ext4', 'MULTI_NODE_MULTI_WRITER')] },
          { ...base, volume_capabilities: [blockCapability('MULTI_NODE_READER_ONLY')] },
          { ...base, volume_capabilities: [{ mount: {} }] },
          {
            ...base,
            volume_capabilities: [mountCapability('ext4', 'SINGLE_NODE_WRITER', ['rw,exec;reboot'])],
          },
          { ...base, parameters: { queues: '99' } },
          { ...base, parameters: { unknown: '1' } },
          { ...base, mutable_parameters: { queues: '2' } },
          { ...base, name: 'x'.repeat(300) },
        ];
        for (const request of cases)
          await csi.expectCode('controller', 'CreateVolume', request, 'INVALID_ARGUMENT');
        assert.deepEqual((await csi.call('controller', 'ListVolumes', {})).entries, []);
      });

      it('answers OUT_OF_RANGE to sizes it cannot make', async () => {
        await csi.expectCode(
          'controller',
          'CreateVolume',
          {
            name: uniqueName(),
            volume_capabilities: [mountCapability()],
            capacity_range: { required_bytes: 2 ** 50 },
          },
          'OUT_OF_RANGE',
        );
        await csi.expectCode(
          'controller',
          'CreateVolume',
          {
            name: uniqueName(),
            volume_capabilities: [mountCapability()],
            capacity_range: { required_bytes: 3 * MiB, limit_bytes: 2 * MiB },
          },
          'OUT_OF_RANGE',
        );
        await csi.expectCode(
          'controller',
          'CreateVolume',
          {
            name: uniqueName(),
            volume_capabilities: [mountCapability('xfs')],
            capacity_range: { limit_bytes: 100 * MiB },
          },
          'OUT_OF_RANGE',
        );
      });

      it('honours accessibility requirements: RESOURCE_EXHAUSTED when this node is not allowed', async () => {
        const on = (node: string): object => ({ segments: { [TOPOLOGY_KEY]: node } });
        await csi.expectCode(
          'controller',
          'CreateVolume',
          {
            name: uniqueName(),
            volume_capabilities: [mountCapability()],
            accessibility_requirements: { requisite: [on('node-2')] },
          },
          'RESOURCE_EXHAUSTED',
        );
        const { volume } = await create({
          accessibility_requirements: {
            requisite: [on('node-2'), on('node-1')],
            preferred: [on('node-1')],
          },
        });
        assert.equal(volume.accessible_topology[0].segments[TOPOLOGY_KEY], 'node-1');
      });

      it('survives a plugin restart: the store is durable', async () => {
        const { volume } = await create();
        await csi.restart();
        const { volume: again } = await csi.call('controller', 'ControllerGetVolume', {
          volume_id: volume.volume_id,
        });
        assert.equal(again.capacity_bytes, volume.capacity_bytes);
      });
    });

    describe('DeleteVolume', () => {
      it('removes the image and is idempotent; ids that cannot exist are fine too', async () => {
        const { volume } = await create();
        await csi.call('controller', 'DeleteVolume', { volume_id: volume.volume_id });
        assert.ok(!statSafe(imagePath('volumes', volume.volume_id)));
        await csi.call('controller', 'DeleteVolume', { volume_id: volume.volume_id });
        await csi.call('controller', 'DeleteVolume', { volume_id: '../../../etc/passwd' });
        await csi.expectCode('controller', 'DeleteVolume', {}, 'INVALID_ARGUMENT');
        await csi.expectCode(
          'controller',
          'ControllerGetVolume',
          { volume_id: volume.volume_id },
          'NOT_FOUND',
        );
      });
    });

    describe('ValidateVolumeCapabilities', () => {
      it('confirms what it supports and explains what it does not', async () => {
        const { volume } = await create();
        const id = volume.volume_id;
        const ok = await csi.call('controller', 'ValidateVolumeCapabilities', {
          volume_id: id,
          volume_capabilities: [mountCapability('xfs'), blockCapability()],
          volume_context: volume.volume_context,
        });
        assert.equal(ok.confirmed.volume_capabilities.length, 2);
        const no = await csi.call('controller', 'ValidateVolumeCapabilities', {
          volume_id: id,
          volume_capabilities: [mountCapability('ext4', 'MULTI_NODE_READER_ONLY')],
        });
        assert.equal(no.confirmed, null);
        assert.match(
          no.message,
          /MULTI_NODE_READER_ONLY is not supported: an image-file volume is local to one node/,
        );
        await csi.expectCode(
          'controller',
          'ValidateVolumeCapabilities',
          { volume_id: id },
          'INVALID_ARGUMENT',
        );
        await csi.expectCode(
          'controller',
          'ValidateVolumeCapabilities',
          { volume_capabilities: [mountCapability()] },
          'INVALID_ARGUMENT',
        );
        await csi.expectCode(
          'controller',
          'ValidateVolumeCapabilities',
          { volume_id: 'vol-nope', volume_capabilities: [mountCapability()] },
          'NOT_FOUND',
        );
      });
    });

    describe('ListVolumes', () => {
      it('pages with tokens that survive deletions and additions, ABORTED on a bad token', async () => {
        const created = new Set<string>();
        for (let i = 0; i < 5; i++) created.add((await create()).volume.volume_id);
        const first = await csi.call('controller', 'ListVolumes', { max_entries: 2 });
        assert.equal(first.entries.length, 2);
        assert.notEqual(first.next_token, '');
        assert.equal(first.entries[0].status.volume_condition.abnormal, false);
        await csi.call('controller', 'DeleteVolume', { volume_id: first.entries[1].volume.volume_id });
        created.delete(first.entries[1].volume.volume_id);
        created.add((await create()).volume.volume_id);
        const seen = new Set<string>(first.entries.map((entry: Reply) => entry.volume.volume_id));
        let token = first.next_token;
        while (token) {
          const page = await csi.call('controller', 'ListVolumes', { max_entries: 2, starting_token: token });
          for (const entry of page.entries) seen.add(entry.volume.volume_id);
          token = page.next_token;
        }
        for (const id of created) if (id >= first.next_token) assert.ok(seen.has(id), `${id} listed`);
        const all = await csi.call('controller', 'ListVolumes', {});
        assert.deepEqual(new Set(all.entries.map((entry: Reply) => entry.volume.volume_id)), created);
        await csi.expectCode('controller', 'ListVolumes', { starting_token: 'not-a-token' }, 'ABORTED');
      });
    });

    describe('GetCapacity and capabilities', () => {
      it('reports free space on this node only, and the size limits', async () => {
        const here = await csi.call('controller', 'GetCapacity', {
          accessible_topology: { segments: { [TOPOLOGY_KEY]: 'node-1' } },
        });
        assert.ok(here.available_capacity > 0);
        assert.equal(here.maximum_volume_size.value, 2 ** 44);
        const elsewhere = await csi.call('controller', 'GetCapacity', {
          accessible_topology: { segments: { [TOPOLOGY_KEY]: 'node-9' } },
        });
        assert.equal(elsewhere.available_capacity, 0);
        await csi.expectCode(
          'controller',
          'GetCapacity',
          { parameters: { queues: 'many' } },
          'INVALID_ARGUMENT',
        );
        const { capabilities } = await csi.call('controller', 'ControllerGetCapabilities');
        const types = capabilities.map((c: Reply) => c.rpc.type);
        for (const type of [
          'CREATE_DELETE_VOLUME',
          'LIST_VOLUMES',
          'GET_CAPACITY',
          'CREATE_DELETE_SNAPSHOT',
          'LIST_SNAPSHOTS',
          'CLONE_VOLUME',
          'EXPAND_VOLUME',
          'GET_VOLUME',
          'VOLUME_CONDITION',
        ])
          assert.ok(types.includes(type), type);
        assert.ok(!types.includes('PUBLISH_UNPUBLISH_VOLUME'));
      });
    });

    describe('ControllerGetVolume', () => {
      localOnly(
        'reports an abnormal condition when the image is gone',
        'the node agent notices a missing image at its next capacity report (every 30 s here); k8s-cluster.test.ts checks that with a short interval',
        async () => {
          const { volume } = await create();
          const healthy = await csi.call('controller', 'ControllerGetVolume', {
            volume_id: volume.volume_id,
          });
          assert.equal(healthy.status.volume_condition.abnormal, false);
          rmSync(imagePath('volumes', volume.volume_id));
          const sick = await csi.call('controller', 'ControllerGetVolume', { volume_id: volume.volume_id });
          assert.equal(sick.status.volume_condition.abnormal, true);
          await csi.expectCode('controller', 'ControllerGetVolume', {}, 'INVALID_ARGUMENT');
        },
      );
    });

    describe('ControllerExpandVolume', () => {
      it('grows the image, never shrinks it, and says when the node must grow the filesystem', async () => {
        const { volume } = await create({ parameters: { blockSize: '4096' } });
        const id = volume.volume_id;
        const grown = await csi.call('controller', 'ControllerExpandVolume', {
          volume_id: id,
          capacity_range: { required_bytes: 100 * MiB + 1 },
          volume_capability: mountCapability(),
        });
        assert.equal(grown.capacity_bytes, 100 * MiB + 4096);
        assert.equal(grown.node_expansion_required, true);
        assert.equal(statSync(imagePath('volumes', id)).size, 100 * MiB + 4096);
        const again = await csi.call('controller', 'ControllerExpandVolume', {
          volume_id: id,
          capacity_range: { required_bytes: MiB },
          volume_capability: blockCapability(),
        });
        assert.equal(again.capacity_bytes, 100 * MiB + 4096);
        assert.equal(again.node_expansion_required, false);
        await csi.expectCode(
          'controller',
          'ControllerExpandVolume',
          { volume_id: id, capacity_range: { limit_bytes: MiB } },
          'OUT_OF_RANGE',
        );
        await csi.expectCode('controller', 'ControllerExpandVolume', { volume_id: id }, 'INVALID_ARGUMENT');
        await csi.expectCode(
          'controller',
          'ControllerExpandVolume',
          { capacity_range: { required_bytes: GiB } },
          'INVALID_ARGUMENT',
        );
        await csi.expectCode(
          'controller',
          'ControllerExpandVolume',
          { volume_id: 'vol-00', capacity_range: { required_bytes: GiB } },
          'NOT_FOUND',
        );
        const listed = await csi.call('controller', 'ControllerGetVolume', { volume_id: id });
        assert.equal(listed.volume.capacity_bytes, 100 * MiB + 4096);
      });
    });

    describe('capacity accounting on a small data directory', () => {
      const data = new SmallFilesystem(DATA_BYTES);
      const available = async (parameters: Record<string, string> = {}): Promise<number> =>
        Number((await csi.call('controller', 'GetCapacity', { parameters })).available_capacity);
      const refused = (request: object): Promise<string> =>
        csi.expectCode(
          'controller',
          'CreateVolume',
          { name: uniqueName(), volume_capabilities: [mountCapability()], ...request },
          'RESOURCE_EXHAUSTED',
        );
      const expand = (volume_id: string, bytes: number): object => ({
        volume_id,
        capacity_range: { required_bytes: bytes },
        volume_capability: blockCapability(),
      });
      const allocated = (id: string): number => statSync(imagePath('volumes', id)).blocks * 512;

      beforeEach(async function () {
        await csi.stop();
        const root = mkdtempSync(join(tmpdir(), 'vduse-csi-capacity-'));
        await data.create(join(root, 'data'));
        if (!data.mounted) requireRoot(this, 'mounting the small data directory');
        csi = await CsiHarness.start({ mode: 'all', store, root });
      });
      afterEach(async () => {
        await csi.stop();
        await data.remove();
        rmSync(join(data.dir, '..'), { recursive: true, force: true });
      });

      it('counts provisioned bytes, not written ones; refuses what does not fit, naming node and bytes', async () => {
        const room = await available();
        assert.equal(room, DATA_BYTES, 'an empty data directory is all room');
        const { volume } = await create({ capacity_range: { required_bytes: 40 * MiB } });
        assert.equal(await available(), room - 40 * MiB);
        // What the volume's pod writes was counted when it was made.
        writeAt(imagePath('volumes', volume.volume_id), 0, 'x'.repeat(8 * MiB));
        assert.equal(await available(), room - 40 * MiB);

        const message = await refused({ capacity_range: { required_bytes: room - 39 * MiB } });
        assert.match(
          message,
          new RegExp(
            `no room for a volume of ${room - 39 * MiB} bytes: node node-1 has ${room - 40 * MiB} bytes available`,
          ),
        );
        const { volume: rest } = await create({ capacity_range: { required_bytes: room - 40 * MiB } });
        assert.equal(await available(), 0);
        await refused({ capacity_range: { required_bytes: MiB } });

        const growth = await csi.expectCode(
          'controller',
          'ControllerExpandVolume',
          expand(volume.volume_id, 41 * MiB),
          'RESOURCE_EXHAUSTED',
        );
        assert.match(
          growth,
          new RegExp(`volume ${volume.volume_id} cannot grow by ${MiB} bytes: node node-1`),
        );
        await csi.call('controller', 'DeleteVolume', { volume_id: rest.volume_id });
        await csi.call('controller', 'ControllerExpandVolume', expand(volume.volume_id, 48 * MiB));
        assert.equal(await available(), room - 48 * MiB);

        // A snapshot is not provisioned: it counts with the space its copy takes.
        await csi.call('controller', 'CreateSnapshot', {
          name: uniqueName(),
          source_volume_id: volume.volume_id,
        });
        await eventually(async () => assert.equal(await available(), room - 56 * MiB), 5000);
      });

      it('a class with an overcommit ratio provisions past the room; GetCapacity answers per class', async () => {
        const room = await available();
        await create({ capacity_range: { required_bytes: 48 * MiB } });
        const thin = { overcommitRatio: '2.5' };
        assert.equal(await available(thin), room * 2.5 - 48 * MiB);
        const { volume } = await create({ capacity_range: { required_bytes: 100 * MiB }, parameters: thin });
        // The node is overcommitted now: the default class finds no room at all.
        assert.equal(await available(), 0);
        await refused({ capacity_range: { required_bytes: MiB } });
        assert.equal(await available(thin), room * 2.5 - 148 * MiB);
        // A volume grows by its own class's ratio.
        await csi.call('controller', 'ControllerExpandVolume', expand(volume.volume_id, 108 * MiB));
        await csi.expectCode(
          'controller',
          'ControllerExpandVolume',
          expand(volume.volume_id, 200 * MiB),
          'RESOURCE_EXHAUSTED',
        );
        await csi.expectCode(
          'controller',
          'GetCapacity',
          { parameters: { overcommitRatio: '0.5' } },
          'INVALID_ARGUMENT',
        );
      });

      it('provisioning thick reserves every block of the image, of its growth and of a clone', async () => {
        const thick = { provisioning: 'thick' };
        const { volume } = await create({ capacity_range: { required_bytes: 16 * MiB }, parameters: thick });
        assert.equal(allocated(volume.volume_id), 16 * MiB);
        await csi.call('controller', 'ControllerExpandVolume', expand(volume.volume_id, 24 * MiB));
        assert.equal(allocated(volume.volume_id), 24 * MiB);
        const { volume: clone } = await create({
          capacity_range: { required_bytes: 24 * MiB },
          parameters: thick,
          volume_content_source: { volume: { volume_id: volume.volume_id } },
        });
        assert.equal(allocated(clone.volume_id), 24 * MiB);
        assert.equal(await available(), DATA_BYTES - 48 * MiB);
        await csi.expectCode(
          'controller',
          'CreateVolume',
          {
            name: uniqueName(),
            volume_capabilities: [mountCapability()],
            parameters: { ...thick, overcommitRatio: '2' },
          },
          'INVALID_ARGUMENT',
        );
      });
    });

    describe('snapshots and clones', () => {
      it('a snapshot is a point-in-time copy; volumes made from it or cloned hold that data', async () => {
        const { volume } = await create({ capacity_range: { required_bytes: 32 * MiB } });
        const source = imagePath('volumes', volume.volume_id);
        writeAt(source, 5 * MiB, 'before the snapshot');
        const name = uniqueName();
        const { snapshot } = await csi.call('controller', 'CreateSnapshot', {
          name,
          source_volume_id: volume.volume_id,
        });
        assert.match(snapshot.snapshot_id, /^snap-[0-9a-f]{32}$/);
        assert.equal(snapshot.size_bytes, 32 * MiB);
        assert.equal(snapshot.ready_to_use, true);
        assert.ok(Math.abs(snapshot.creation_time.seconds - Date.now() / 1000) < 60);
        writeAt(source, 5 * MiB, 'after  the snapshot');
        assert.deepEqual(
          (await csi.call('controller', 'CreateSnapshot', { name, source_volume_id: volume.volume_id }))
            .snapshot,
          snapshot,
        );

        const restored = await create({
          capacity_range: { required_bytes: 64 * MiB },
          volume_content_source: { snapshot: { snapshot_id: snapshot.snapshot_id } },
        });
        assert.deepEqual(restored.volume.content_source, {
          snapshot: { snapshot_id: snapshot.snapshot_id },
          type: 'snapshot',
        });
        const restoredImage = imagePath('volumes', restored.volume.volume_id);
        assert.equal(readAt(restoredImage, 5 * MiB, 19), 'before the snapshot');
        assert.equal(statSync(restoredImage).size, 64 * MiB);

        const clone = await create({
          capacity_range: null,
          volume_content_source: { volume: { volume_id: volume.volume_id } },
        });
        assert.equal(clone.volume.capacity_bytes, 32 * MiB);
        assert.equal(
          readAt(imagePath('volumes', clone.volume.volume_id), 5 * MiB, 19),
          'after  the snapshot',
        );
      });

      it('answers errors the spec names, and deletes idempotently', async () => {
        const { volume } = await create({ capacity_range: { required_bytes: 32 * MiB } });
        const name = uniqueName();
        await csi.expectCode(
          'controller',
          'CreateSnapshot',
          { source_volume_id: volume.volume_id },
          'INVALID_ARGUMENT',
        );
        await csi.expectCode('controller', 'CreateSnapshot', { name }, 'INVALID_ARGUMENT');
        await csi.expectCode(
          'controller',
          'CreateSnapshot',
          { name, source_volume_id: 'vol-missing' },
          'NOT_FOUND',
        );
        const { snapshot } = await csi.call('controller', 'CreateSnapshot', {
          name,
          source_volume_id: volume.volume_id,
        });
        const other = await create();
        await csi.expectCode(
          'controller',
          'CreateSnapshot',
          { name, source_volume_id: other.volume.volume_id },
          'ALREADY_EXISTS',
        );
        const fromSource = (source: object, capacity?: number): object => ({
          name: uniqueName(),
          volume_capabilities: [mountCapability()],
          volume_content_source: source,
          ...(capacity ? { capacity_range: { required_bytes: capacity } } : {}),
        });
        await csi.expectCode(
          'controller',
          'CreateVolume',
          fromSource({ snapshot: { snapshot_id: 'snap-nope' } }),
          'NOT_FOUND',
        );
        await csi.expectCode(
          'controller',
          'CreateVolume',
          fromSource({ volume: { volume_id: 'vol-nope' } }),
          'NOT_FOUND',
        );
        const smallerThanSource = fromSource({ snapshot: { snapshot_id: snapshot.snapshot_id } }, 16 * MiB);
        await csi.expectCode('controller', 'CreateVolume', smallerThanSource, 'OUT_OF_RANGE');
        await csi.call('controller', 'DeleteSnapshot', { snapshot_id: snapshot.snapshot_id });
        await csi.call('controller', 'DeleteSnapshot', { snapshot_id: snapshot.snapshot_id });
        await csi.expectCode('controller', 'DeleteSnapshot', {}, 'INVALID_ARGUMENT');
        assert.ok(!statSafe(imagePath('snapshots', snapshot.snapshot_id)));
      });

      it('lists snapshots by id, by source and by page', async () => {
        const a = (await create()).volume.volume_id;
        const b = (await create()).volume.volume_id;
        const ids: string[] = [];
        for (const source of [a, a, b])
          ids.push(
            (await csi.call('controller', 'CreateSnapshot', { name: uniqueName(), source_volume_id: source }))
              .snapshot.snapshot_id,
          );
        const byId = await csi.call('controller', 'ListSnapshots', { snapshot_id: ids[2] });
        assert.deepEqual(
          byId.entries.map((e: Reply) => e.snapshot.snapshot_id),
          [ids[2]],
        );
        assert.deepEqual(
          (await csi.call('controller', 'ListSnapshots', { snapshot_id: 'snap-unknown' })).entries,
          [],
        );
        const fromA = await csi.call('controller', 'ListSnapshots', { source_volume_id: a });
        assert.deepEqual(
          fromA.entries.map((e: Reply) => e.snapshot.snapshot_id).sort(),
          [ids[0], ids[1]].sort(),
        );
        assert.deepEqual(
          (await csi.call('controller', 'ListSnapshots', { source_volume_id: 'vol-unknown' })).entries,
          [],
        );
        const page = await csi.call('controller', 'ListSnapshots', { max_entries: 2 });
        assert.equal(page.entries.length, 2);
        const rest = await csi.call('controller', 'ListSnapshots', {
          max_entries: 2,
          starting_token: page.next_token,
        });
        assert.equal(rest.entries.length, 1);
        assert.equal(rest.next_token, '');
        await csi.expectCode('controller', 'ListSnapshots', { starting_token: 'bogus' }, 'ABORTED');
      });
    });
  });
}

function statSafe(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}
