import { CephError, checkCeph } from './ceph-error';
import { Pointer, PointerCell, callOffThread, ceph, readCString } from './librbd';

/** Bounds on how long a cluster that does not answer can keep a call waiting, in seconds. */
export interface CephTimeouts {
  /** rados_connect: reaching the monitors and authenticating (client_mount_timeout). */
  mountSeconds: number;
  /** Each request to a monitor (rados_mon_op_timeout): lock breaking, blocklisting, pool lookups. */
  monOpSeconds: number;
  /** Each request to an OSD (rados_osd_op_timeout), the data path included: 0 waits forever. */
  osdOpSeconds: number;
}

export const DEFAULT_CEPH_TIMEOUTS: Readonly<CephTimeouts> = {
  mountSeconds: 30,
  monOpSeconds: 30,
  osdOpSeconds: 30,
};

/** How to reach and authenticate to a Ceph cluster. */
export interface RadosConnectOptions {
  /** ceph.conf path; without it (and without monHost) librados' default places are searched. */
  conf?: string;
  /** Monitor addresses (mon_host), in place of the configuration file's. */
  monHost?: string;
  /** cephx user without the "client." prefix (default admin). */
  user?: string;
  /** Keyring path. */
  keyring?: string;
  /** The user's secret itself (kept out of errors and logs), in place of a keyring. */
  key?: string;
  timeouts?: Partial<CephTimeouts>;
  /** false: librbd caches nothing, so a read sees what another node's writer just wrote. */
  rbdCache?: boolean;
}

/** One connection to a cluster (rados_t). Breaking a lock fences a whole connection. */
export class RadosClient {
  private constructor(
    readonly user: string,
    readonly handle: Pointer,
  ) {}

  static async connect(options: RadosConnectOptions): Promise<RadosClient> {
    const lib = ceph();
    const user = options.user ?? 'admin';
    const out: [Pointer | null] = [null];
    checkCeph(lib.radosCreate2(out, 'ceph', `client.${user}`, 0), `create a Ceph client for client.${user}`);
    const client = new RadosClient(user, out[0]!);
    try {
      client.configure(options);
      const connected = await callOffThread(lib.radosConnect, client.handle);
      if (connected < 0) throw connectError(user, -connected);
    } catch (error) {
      client.shutdown();
      throw error;
    }
    return client;
  }

  /** This connection's address: what the OSDs know it by, hence how it shows as a lock owner. */
  address(): string {
    const cell = new PointerCell();
    try {
      checkCeph(ceph().radosGetAddrs(this.handle, cell.address), 'get the Ceph client address');
      try {
        return readCString(cell.value);
      } finally {
        ceph().radosBufferFree(cell.value);
      }
    } finally {
      cell.free();
    }
  }

  async openPool(pool: string, namespace?: string): Promise<RadosPool> {
    const out: [Pointer | null] = [null];
    const result = await callOffThread(ceph().radosIoctxCreate, this.handle, pool, out);
    if (result < 0) throw new CephError(`open pool ${pool}`, -result, poolMeaning(-result, pool, this.user));
    if (namespace !== undefined) ceph().radosIoctxSetNamespace(out[0]!, namespace);
    return new RadosPool(out[0]!, namespace === undefined ? pool : `${pool}/${namespace}`);
  }

  shutdown(): void {
    ceph().radosShutdown(this.handle);
  }

  private configure(options: RadosConnectOptions): void {
    const lib = ceph();
    if (options.conf !== undefined) {
      const read = lib.radosConfReadFile(this.handle, options.conf);
      if (read < 0)
        throw new CephError(`read Ceph configuration ${options.conf}`, -read, {
          kind: 'not-found',
          meaning: 'no such file, or not readable',
        });
    } else if (options.monHost === undefined) {
      const read = lib.radosConfReadFile(this.handle, null);
      if (read < 0)
        throw new CephError('read Ceph configuration', -read, {
          kind: 'not-found',
          meaning: 'no ceph.conf at $CEPH_CONF, /etc/ceph/ceph.conf, ~/.ceph/config or ./ceph.conf',
        });
    }
    const timeouts = { ...DEFAULT_CEPH_TIMEOUTS, ...options.timeouts };
    const settings: [string, string | undefined][] = [
      // librados' own diagnostics would otherwise interleave with the server's logs on stderr.
      ['log_to_stderr', 'false'],
      ['err_to_stderr', 'false'],
      ['mon_host', options.monHost],
      ['keyring', options.keyring],
      ['key', options.key],
      ['client_mount_timeout', String(timeouts.mountSeconds)],
      ['rados_mon_op_timeout', String(timeouts.monOpSeconds)],
      ['rados_osd_op_timeout', String(timeouts.osdOpSeconds)],
      // Whatever ceph.conf says: breaking a lock must fence its owner, or both would write.
      ['rbd_blocklist_on_break_lock', 'true'],
      ['rbd_cache', options.rbdCache === false ? 'false' : undefined],
    ];
    for (const [option, value] of settings) {
      if (value !== undefined)
        checkCeph(lib.radosConfSet(this.handle, option, value), `set Ceph option ${option}`);
    }
  }
}

function connectError(user: string, errno: number): CephError {
  const operation = `connect to Ceph as client.${user}`;
  // librados finds no key at all: a keyring path that does not exist, or none configured.
  if (errno === 2)
    return new CephError(operation, errno, { kind: 'permission', meaning: 'no key for this user' });
  return new CephError(operation, errno);
}

function poolMeaning(errno: number, pool: string, user: string) {
  if (errno === 2) return { kind: 'not-found' as const, meaning: `no pool named ${pool}` };
  if (errno === 1 || errno === 13)
    return { kind: 'permission' as const, meaning: `client.${user} may not use pool ${pool}` };
  return undefined;
}

/** An I/O context on a pool, optionally inside one RADOS namespace (rados_ioctx_t). */
export class RadosPool {
  constructor(
    readonly handle: Pointer,
    /** pool or pool/namespace, for messages. */
    readonly name: string,
  ) {}

  close(): void {
    ceph().radosIoctxDestroy(this.handle);
  }
}
