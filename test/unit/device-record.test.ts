import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeviceRecord, readRecord, writeRecord } from '../../src/daemon/device-record';
import { BlkGeometry } from '../../src/virtio/blk/config';

const geometry: BlkGeometry = {
  capacityBytes: 1 << 20,
  queues: 2,
  queueSize: 128,
  blockSize: 512,
  readOnly: false,
  serial: 'vol',
  keepAllocation: false,
};

describe('device records', () => {
  let stateDir: string;
  const stored = (name: string): Record<string, unknown> =>
    JSON.parse(readFileSync(join(stateDir, 'devices', `${name}.json`), 'utf8')) as Record<string, unknown>;

  beforeEach(() => {
    stateDir = mkdtempSync(join(tmpdir(), 'vduse-record-test-'));
    mkdirSync(join(stateDir, 'devices'));
  });
  afterEach(() => rmSync(stateDir, { recursive: true, force: true }));

  it('reads what it wrote', () => {
    const record: DeviceRecord = {
      version: 1,
      name: 'vol',
      backend: { kind: 'file', path: '/data/vol.img' },
      geometry,
    };
    writeRecord(stateDir, record);
    assert.deepEqual(readRecord(stateDir, 'vol'), record);
  });

  it('reads an RBD record with its lock holders, and writes no image path for it', () => {
    const record: DeviceRecord = {
      version: 1,
      name: 'vol',
      backend: {
        kind: 'rbd',
        location: { pool: 'rbd', namespace: 'ns', image: 'vol' },
        client: { conf: '/etc/ceph/ceph.conf', user: 'vduse', keyring: '/etc/ceph/keyring' },
      },
      geometry,
      lockHolders: ['127.0.0.1:0/1390356340'],
    };
    writeRecord(stateDir, record);
    assert.deepEqual(readRecord(stateDir, 'vol'), record);
    assert.equal(stored('vol').imagePath, undefined, 'an older build must not take it for a file');
  });

  it('writes a record of a shared RBD image as version 2, which builds before sharing refuse', () => {
    const record: DeviceRecord = {
      version: 2,
      name: 'vol',
      backend: { kind: 'rbd', location: { pool: 'rbd', image: 'vol' }, client: {}, sharing: 'multi-writer' },
      geometry,
      lockHolders: ['127.0.0.1:0/1390356340'],
    };
    writeRecord(stateDir, record);
    assert.equal(stored('vol').version, 2);
    assert.deepEqual(readRecord(stateDir, 'vol'), record);
    assert.throws(() => writeRecord(stateDir, { ...record, version: 1 }), /must be version 2/);
  });

  it('keeps imagePath in file records, so an older build can still take the device over', () => {
    writeRecord(stateDir, {
      version: 1,
      name: 'vol',
      backend: { kind: 'file', path: '/data/vol.img' },
      geometry,
    });
    assert.equal(stored('vol').imagePath, '/data/vol.img');
  });

  it('reads the records of builds before backends and before keep-allocation as file records', () => {
    const olderGeometry: Partial<BlkGeometry> = { ...geometry };
    delete olderGeometry.keepAllocation;
    writeFileSync(
      join(stateDir, 'devices', 'old.json'),
      JSON.stringify({ version: 1, name: 'old', imagePath: '/data/old.img', geometry: olderGeometry }),
    );
    assert.deepEqual(readRecord(stateDir, 'old'), {
      version: 1,
      name: 'old',
      backend: { kind: 'file', path: '/data/old.img' },
      geometry,
    });
  });

  it('refuses a record without storage, of another name, of an unknown version or sharing', () => {
    const shared = { kind: 'rbd', location: { pool: 'rbd', image: 'bad' }, client: {} };
    const write = (record: object): void =>
      writeFileSync(join(stateDir, 'devices', 'bad.json'), JSON.stringify(record));
    for (const record of [
      { version: 1, name: 'bad', geometry },
      { version: 1, name: 'other', imagePath: '/x.img', geometry },
      { version: 2, name: 'bad', imagePath: '/x.img', geometry },
      { version: 1, name: 'bad', backend: { ...shared, sharing: 'read-only' }, geometry },
      { version: 2, name: 'bad', backend: shared, geometry },
      { version: 2, name: 'bad', backend: { ...shared, sharing: 'everyone' }, geometry },
    ]) {
      write(record);
      assert.throws(() => readRecord(stateDir, 'bad'), /unusable device record for bad/);
    }
  });

  it('answers null when there is no record', () => {
    assert.equal(readRecord(stateDir, 'none'), null);
  });
});
