import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { CsiError } from '../../src/csi/errors';
import { isVolumeId, snapshotIdFor, volumeIdFor } from '../../src/csi/ids';
import { OperationLocks } from '../../src/csi/operation-locks';
import { paginate } from '../../src/csi/pagination';
import { DEFAULT_PARAMETERS, parseParameters } from '../../src/csi/parameters';
import { nodeSatisfies, TOPOLOGY_KEY } from '../../src/csi/topology';
import { VolumeCapability } from '../../src/csi/messages';
import { capabilityProblem, chooseCapacity, parseCapability, requirePath } from '../../src/csi/validate';

function code(action: () => unknown): string {
  try {
    action();
  } catch (error) {
    assert.ok(error instanceof CsiError, `expected a CsiError, got ${String(error)}`);
    return status[error.code];
  }
  return 'OK';
}

const limits = { blockSize: 4096, defaultBytes: 2 ** 30, minimumBytes: 1 << 20, maximumBytes: 2 ** 40 };

describe('CSI request validation', () => {
  it('derives stable, well-formed ids from names', () => {
    assert.equal(volumeIdFor('pvc-1'), volumeIdFor('pvc-1'));
    assert.notEqual(volumeIdFor('pvc-1'), volumeIdFor('pvc-2'));
    assert.ok(isVolumeId(volumeIdFor('x'.repeat(128))));
    assert.match(snapshotIdFor('s'), /^snap-[0-9a-f]{32}$/);
    for (const bad of ['', '../etc', 'vol-', `vol-${'0'.repeat(31)}/`, `VOL-${'0'.repeat(32)}`])
      assert.ok(!isVolumeId(bad));
  });

  it('chooses a capacity inside the range, rounded up to the block size', () => {
    assert.equal(chooseCapacity(null, limits), 1 << 30);
    assert.equal(chooseCapacity({ required_bytes: 5_000_000 }, limits), 5_001_216);
    assert.equal(chooseCapacity({ required_bytes: 1 }, limits), 1 << 20);
    assert.equal(chooseCapacity({ limit_bytes: 1 << 25 }, limits), 1 << 25);
    assert.equal(chooseCapacity({ required_bytes: 8192, limit_bytes: 1 << 21 }, limits), 1 << 20);
    assert.equal(
      code(() => chooseCapacity({ required_bytes: 5000, limit_bytes: 4000 }, limits)),
      'OUT_OF_RANGE',
    );
    assert.equal(
      code(() => chooseCapacity({ required_bytes: 5000, limit_bytes: 6000 }, limits)),
      'OUT_OF_RANGE',
    );
    assert.equal(
      code(() => chooseCapacity({ required_bytes: 2 ** 41 }, limits)),
      'OUT_OF_RANGE',
    );
    assert.equal(
      code(() => chooseCapacity({ required_bytes: -1 }, limits)),
      'INVALID_ARGUMENT',
    );
  });

  const mount = (fs_type: string, mode: string = 'SINGLE_NODE_WRITER'): VolumeCapability =>
    ({
      mount: { fs_type, mount_flags: [] },
      access_mode: { mode },
      access_type: 'mount',
    }) as VolumeCapability;
  const block = (mode: string): VolumeCapability =>
    ({ block: {}, access_mode: { mode }, access_type: 'block' }) as VolumeCapability;

  it('accepts single-node capabilities with ext4, xfs or block, and nothing else', () => {
    for (const kind of ['file', 'rbd'] as const) {
      assert.equal(capabilityProblem(mount(''), kind), null);
      assert.equal(capabilityProblem(mount('xfs', 'SINGLE_NODE_MULTI_WRITER'), kind), null);
      assert.equal(capabilityProblem(block('SINGLE_NODE_READER_ONLY'), kind), null);
      assert.match(capabilityProblem(mount('btrfs'), kind)!, /btrfs/);
      assert.match(capabilityProblem({ access_mode: { mode: 'SINGLE_NODE_WRITER' } }, kind)!, /access_type/);
      assert.match(
        capabilityProblem(
          {
            mount: { fs_type: 'ext4', mount_flags: ['ro,exec'] },
            access_mode: { mode: 'SINGLE_NODE_WRITER' },
            access_type: 'mount',
          },
          kind,
        )!,
        /mount flag/,
      );
      assert.equal(parseCapability(mount(''), 'c', kind).fsType, 'ext4');
      assert.equal(parseCapability(mount('xfs', 'SINGLE_NODE_READER_ONLY'), 'c', kind).readOnly, true);
      assert.equal(parseCapability(block('SINGLE_NODE_WRITER'), 'c', kind).multiNode, false);
      assert.equal(
        code(() => parseCapability(undefined, 'volume_capability', kind)),
        'INVALID_ARGUMENT',
      );
    }
  });

  it('gives image-file volumes no multi-node mode, saying why', () => {
    for (const capability of [mount('ext4', 'MULTI_NODE_READER_ONLY'), block('MULTI_NODE_MULTI_WRITER')]) {
      assert.match(capabilityProblem(capability, 'file')!, /image-file volume is local to one node/);
      // CSI's answer at the node to a CO that exceeds the volume's capabilities.
      assert.equal(
        code(() => parseCapability(capability, 'volume_capability', 'file')),
        'FAILED_PRECONDITION',
      );
    }
  });

  it('gives RBD volumes MULTI_NODE_READER_ONLY, and MULTI_NODE_MULTI_WRITER for Block only', () => {
    assert.equal(capabilityProblem(mount('ext4', 'MULTI_NODE_READER_ONLY'), 'rbd'), null);
    assert.equal(capabilityProblem(block('MULTI_NODE_READER_ONLY'), 'rbd'), null);
    assert.equal(capabilityProblem(block('MULTI_NODE_MULTI_WRITER'), 'rbd'), null);
    assert.match(capabilityProblem(mount('ext4', 'MULTI_NODE_MULTI_WRITER'), 'rbd')!, /Block volumes only/);
    assert.equal(
      code(() => parseCapability(mount('xfs', 'MULTI_NODE_MULTI_WRITER'), 'c', 'rbd')),
      'INVALID_ARGUMENT',
    );
    const reader = parseCapability(mount('ext4', 'MULTI_NODE_READER_ONLY'), 'c', 'rbd');
    assert.deepEqual([reader.readOnly, reader.multiNode], [true, true]);
    const writer = parseCapability(block('MULTI_NODE_MULTI_WRITER'), 'c', 'rbd');
    assert.deepEqual([writer.readOnly, writer.multiNode], [false, true]);
  });

  it('refuses MULTI_NODE_SINGLE_WRITER for every volume', () => {
    for (const kind of ['file', 'rbd'] as const) {
      assert.match(
        capabilityProblem(block('MULTI_NODE_SINGLE_WRITER'), kind)!,
        /MULTI_NODE_SINGLE_WRITER is not/,
      );
      assert.equal(
        code(() => parseCapability(block('MULTI_NODE_SINGLE_WRITER'), 'c', kind)),
        'FAILED_PRECONDITION',
      );
    }
  });

  it('refuses relative paths and paths with ..', () => {
    assert.equal(requirePath('/var/lib/kubelet/x/', 'p'), '/var/lib/kubelet/x');
    for (const bad of ['', 'relative', '/a/../b', '/a/..'])
      assert.equal(
        code(() => requirePath(bad, 'p')),
        'INVALID_ARGUMENT',
      );
  });

  it('validates StorageClass parameters and ignores the sidecars own keys', () => {
    assert.deepEqual(
      parseParameters({
        queues: '2',
        queueSize: '128',
        blockSize: '4096',
        'csi.storage.k8s.io/pvc/name': 'x',
      }),
      {
        queues: 2,
        queueSize: 128,
        blockSize: 4096,
        overcommitRatio: 1,
        provisioning: 'thin',
      },
    );
    assert.deepEqual(parseParameters({ overcommitRatio: '2.5' }), {
      ...DEFAULT_PARAMETERS,
      overcommitRatio: 2.5,
    });
    assert.deepEqual(parseParameters({ overcommitRatio: '1.0', provisioning: 'thick' }), {
      ...DEFAULT_PARAMETERS,
      provisioning: 'thick',
    });
    const invalid: Record<string, string>[] = [
      { queues: '0' },
      { queues: '1.5' },
      { queueSize: '100' },
      { blockSize: '8192' },
      { colour: 'red' },
      { overcommitRatio: '0.5' },
      { overcommitRatio: '-2' },
      { overcommitRatio: '2e3' },
      { overcommitRatio: '1001' },
      { overcommitRatio: 'Infinity' },
      { overcommitRatio: '' },
      { provisioning: 'eager' },
      { provisioning: 'thick', overcommitRatio: '2' },
    ];
    for (const bad of invalid)
      assert.equal(
        code(() => parseParameters(bad)),
        'INVALID_ARGUMENT',
      );
  });

  it('admits this node unless a requisite topology excludes it', () => {
    const on = (node: string) => ({ segments: { [TOPOLOGY_KEY]: node } });
    assert.ok(nodeSatisfies(null, 'a'));
    assert.ok(nodeSatisfies({ requisite: [on('b'), on('a')] }, 'a'));
    assert.ok(nodeSatisfies({ preferred: [on('b')] }, 'a'));
    assert.ok(!nodeSatisfies({ requisite: [on('b')], preferred: [on('b')] }, 'a'));
  });
});

describe('pagination', () => {
  const ids = ['vol-a', 'vol-b', 'vol-c', 'vol-d', 'vol-e'];
  const page = (max: number, token?: string) =>
    paginate(
      ids,
      (id) => id,
      (id) => id.startsWith('vol-'),
      { max_entries: max, starting_token: token },
    );

  it('walks every entry once with tokens, and all of them without max_entries', () => {
    const seen: string[] = [];
    let token: string | undefined;
    do {
      const next = page(2, token);
      assert.ok(next.entries.length <= 2);
      seen.push(...next.entries);
      token = next.next_token || undefined;
    } while (token);
    assert.deepEqual(seen, ids);
    assert.deepEqual(page(0), { entries: ids, next_token: '' });
  });

  it('keeps a token valid when its own entry is gone', () => {
    const first = page(2);
    const remaining = paginate(
      ids.filter((id) => id !== first.next_token),
      (id) => id,
      () => true,
      { starting_token: first.next_token },
    );
    assert.deepEqual(remaining.entries, ['vol-d', 'vol-e']);
  });

  it('answers ABORTED to a token it never made and INVALID_ARGUMENT to a negative max', () => {
    assert.equal(
      code(() => page(1, 'garbage')),
      'ABORTED',
    );
    assert.equal(
      code(() => page(-1)),
      'INVALID_ARGUMENT',
    );
  });
});

describe('operation locks', () => {
  it('answers ABORTED while an operation on the same key runs, and frees the key afterwards', async () => {
    const locks = new OperationLocks();
    let release!: () => void;
    const first = locks.run(['vol-1'], () => new Promise<void>((resolve) => (release = resolve)));
    await assert.rejects(
      locks.run(['vol-2', 'vol-1'], async () => undefined),
      (error: CsiError) => error.code === status.ABORTED,
    );
    assert.equal(await locks.run(['vol-2'], async () => 'other key'), 'other key');
    release();
    await first;
    assert.equal(await locks.run(['vol-1'], async () => 'again'), 'again');
    await assert.rejects(
      locks.run(['k'], async () => Promise.reject(new Error('boom'))),
      /boom/,
    );
    assert.equal(await locks.run(['k'], async () => 'freed after failure'), 'freed after failure');
  });
});
