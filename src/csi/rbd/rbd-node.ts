import { claimOfContext } from '../claim';
import { RbdSharing, checkRbdSharing, parseRbdLocation, rbdLocationText } from '../../backend/descriptor';
import { invalidArgument, notFound } from '../errors';
import { StagedVolume } from '../node-records';
import { VolumeParameters, parseParameters } from '../parameters';
import { ParsedCapability } from '../validate';
import { ServeSpec } from '../volume-servers';
import { CephClusters } from './clusters';
import { csiErrorOfCeph } from './ceph-status';
import { monitorDigest, parseMonitorList } from './monitors';
import { NodeCephFiles } from './node-credentials';
import { MONITORS_CONTEXT_KEY } from './parameters';
import { cephCredentials } from './secrets';
import { RbdVolumeId, parseRbdVolumeId, rbdDeviceName } from './volume-id';

/** What of volume_context says how to serve the device (the rest is the cluster's). */
const SERVING_CONTEXT_KEYS = ['queues', 'queueSize', 'blockSize'];

type RbdRecord = NonNullable<StagedVolume['rbd']>;

/** How a volume staged with `capability` shares its image with other nodes (undefined: it does not). */
function sharingOf(capability: Pick<ParsedCapability, 'readOnly' | 'multiNode'>): RbdSharing | undefined {
  if (!capability.multiNode) return undefined;
  return capability.readOnly ? 'read-only' : 'multi-writer';
}

/**
 * The node's side of RBD volumes: from the id, volume_context and the stage secrets, the files a
 * device server reaches the cluster with, and the spec it is started with. Nothing is kept about a
 * volume but its staging record and those files, which unstaging removes.
 */
export class RbdNodeVolumes {
  private readonly files: NodeCephFiles;

  constructor(
    private readonly clusters: CephClusters,
    stateDir: string,
  ) {
    this.files = new NodeCephFiles(stateDir);
  }

  isWellFormed(id: string): boolean {
    try {
      parseRbdVolumeId(id);
      return true;
    } catch {
      return false;
    }
  }

  /** Writes the volume's client files; NOT_FOUND for an id no RBD volume has. */
  prepare(
    id: string,
    request: { volume_context?: Record<string, string>; secrets?: Record<string, string> },
    capability: Pick<ParsedCapability, 'readOnly' | 'multiNode'>,
  ): { spec: ServeSpec; parameters: VolumeParameters; record: Pick<StagedVolume, 'rbd' | 'claim'> } {
    let volume: RbdVolumeId;
    try {
      volume = parseRbdVolumeId(id);
    } catch (error) {
      throw notFound(`volume ${JSON.stringify(id)} does not exist: ${(error as Error).message}`);
    }
    const context = request.volume_context ?? {};
    const credentials = cephCredentials(request.secrets, 'NodeStageVolume of an RBD volume');
    const serving = Object.fromEntries(
      Object.entries(context).filter(([key]) => SERVING_CONTEXT_KEYS.includes(key)),
    );
    const parameters = parseParameters(serving);
    this.files.write(rbdDeviceName(id), this.monitorsOf(volume, context), credentials);
    const sharing = sharingOf(capability);
    const record = {
      image: rbdLocationText(volume.location),
      user: credentials.user,
      ...(sharing === undefined ? {} : { sharing }),
    };
    const claim = claimOfContext(context);
    return {
      spec: this.specOf(id, record, parameters, capability.readOnly),
      parameters,
      record: { rbd: record, ...(claim ? { claim } : {}) },
    };
  }

  specOf(id: string, record: RbdRecord, parameters: VolumeParameters, readOnly: boolean): ServeSpec {
    const deviceName = rbdDeviceName(id);
    const files = this.files.paths(deviceName);
    return {
      deviceName,
      // Checked again: the record is a file a restarted plugin reads back.
      storage: {
        kind: 'rbd',
        location: parseRbdLocation(record.image),
        client: { user: record.user, ...files },
        ...(record.sharing === undefined ? {} : { sharing: checkRbdSharing(record.sharing) }),
      },
      parameters,
      readOnly,
    };
  }

  /** Removes the volume's client files (its key), if any. */
  release(id: string): void {
    if (this.isWellFormed(id)) this.files.remove(rbdDeviceName(id));
  }

  /**
   * A volume whose class listed monitors carries them in volume_context; they must be the set its
   * id names, so a context cannot point a volume at another cluster.
   */
  private monitorsOf(volume: RbdVolumeId, context: Record<string, string>): string[] {
    const listed = context[MONITORS_CONTEXT_KEY];
    if (volume.cluster.kind === 'monitors' && listed !== undefined) {
      let monitors: string[];
      try {
        monitors = parseMonitorList(listed);
      } catch (error) {
        throw invalidArgument(`volume_context monitors: ${(error as Error).message}`);
      }
      if (monitorDigest(monitors) !== volume.cluster.digest)
        throw invalidArgument('volume_context monitors are not the monitor set the volume id names');
      return monitors;
    }
    try {
      return this.clusters.monitorsOf(volume.cluster);
    } catch (error) {
      throw csiErrorOfCeph(error);
    }
  }
}
