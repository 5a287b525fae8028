import { FilesystemType, SUPPORTED_FILESYSTEMS } from '../node/filesystem';
import { failedPrecondition, invalidArgument, outOfRange } from './errors';
import { AccessModeName, CapacityRange, VolumeCapability } from './messages';

/** Where a volume's data lives, which decides the access modes it has. */
export type VolumeKind = 'file' | 'rbd';

const SINGLE_NODE_MODES: readonly AccessModeName[] = [
  'SINGLE_NODE_WRITER',
  'SINGLE_NODE_SINGLE_WRITER',
  'SINGLE_NODE_MULTI_WRITER',
  'SINGLE_NODE_READER_ONLY',
];
/**
 * An image file is on one node. An RBD image may be served by several nodes: read-only, or for
 * Block read-write (two writers of a non-cluster filesystem corrupt it). MULTI_NODE_SINGLE_WRITER
 * is refused: a node stages before it knows whether it publishes read-only, so no node could stage
 * it either way, and Kubernetes never asks for it.
 */
const ACCESS_MODES: Readonly<Record<VolumeKind, readonly AccessModeName[]>> = {
  file: SINGLE_NODE_MODES,
  rbd: [...SINGLE_NODE_MODES, 'MULTI_NODE_READER_ONLY', 'MULTI_NODE_MULTI_WRITER'],
};
const READ_ONLY_MODES: readonly AccessModeName[] = ['SINGLE_NODE_READER_ONLY', 'MULTI_NODE_READER_ONLY'];
export const DEFAULT_FS_TYPE: FilesystemType = 'ext4';
/** xfsprogs refuses to make filesystems smaller than this. */
export const XFS_MINIMUM_BYTES = 300 * 1024 * 1024;

// CSI's size limit for a string field; the chart's CRDs hold names of up to that many characters.
const MAX_NAME_BYTES = 128;
// Mount flags go to mount(8) as -o values: no option separators or shell-looking characters.
const MOUNT_FLAG = /^[A-Za-z0-9_.=:@/+-]+$/;

export function requireField(value: string | undefined, field: string): string {
  if (!value) throw invalidArgument(`${field} is required`);
  return value;
}

/** CO-chosen names are stored, never used as paths; they still must be sane. */
export function requireName(value: string | undefined, field: string): string {
  const name = requireField(value, field);
  if (Buffer.byteLength(name, 'utf8') > MAX_NAME_BYTES)
    throw invalidArgument(`${field} is longer than ${MAX_NAME_BYTES} bytes`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) throw invalidArgument(`${field} contains control characters`);
  return name;
}

/** An absolute path without `..` or NUL: a CO path we create, mount or remove. */
export function requirePath(value: string | undefined, field: string): string {
  const path = requireField(value, field);
  if (!path.startsWith('/') || path.includes('\0') || path.split('/').includes('..'))
    throw invalidArgument(`${field} must be an absolute path without '..', got ${JSON.stringify(path)}`);
  return path.length > 1 ? path.replace(/\/+$/, '') : path;
}

export interface ParsedCapability {
  accessType: 'mount' | 'block';
  accessMode: AccessModeName;
  fsType: FilesystemType;
  mountFlags: string[];
  readOnly: boolean;
  /** Other nodes may use the volume at the same time (read-only, or Block read-write). */
  multiNode: boolean;
}

/** Why the plugin cannot serve a capability, or null when it can. */
export function capabilityProblem(
  capability: VolumeCapability | null | undefined,
  kind: VolumeKind,
): string | null {
  if (!capability) return 'a volume capability is empty';
  const mode = capability.access_mode?.mode;
  if (!mode || mode === 'UNKNOWN') return 'access_mode is required';
  if (!ACCESS_MODES[kind].includes(mode)) return accessModeProblem(mode, kind);
  if (capability.access_type === 'mount') {
    if (mode === 'MULTI_NODE_MULTI_WRITER')
      return 'access mode MULTI_NODE_MULTI_WRITER is for Block volumes only: a filesystem mounted on two nodes at once is corrupted';
    const fsType = capability.mount?.fs_type ?? '';
    if (fsType !== '' && !(SUPPORTED_FILESYSTEMS as readonly string[]).includes(fsType))
      return `fs_type ${fsType} is not supported (use ${SUPPORTED_FILESYSTEMS.join(' or ')})`;
    const badFlag = (capability.mount?.mount_flags ?? []).find((flag) => !MOUNT_FLAG.test(flag));
    if (badFlag !== undefined) return `mount flag ${JSON.stringify(badFlag)} is not valid`;
    if (capability.mount?.volume_mount_group) return 'volume_mount_group is not supported';
    return null;
  }
  if (capability.access_type === 'block') return null;
  return 'access_type (mount or block) is required';
}

function accessModeProblem(mode: AccessModeName, kind: VolumeKind): string {
  if (kind === 'file' && ACCESS_MODES.rbd.includes(mode))
    return `access mode ${mode} is not supported: an image-file volume is local to one node (RBD volumes have it)`;
  if (mode === 'MULTI_NODE_SINGLE_WRITER')
    return (
      'access mode MULTI_NODE_SINGLE_WRITER is not supported: a node stages a volume before it knows ' +
      'whether it will write (use MULTI_NODE_READER_ONLY, or MULTI_NODE_MULTI_WRITER for Block)'
    );
  return `access mode ${mode} is not supported (supported: ${ACCESS_MODES[kind].join(', ')})`;
}

/** Whether a mode has one node write while others read, or several nodes use the volume at once. */
function isMultiNode(mode: AccessModeName): boolean {
  return mode.startsWith('MULTI_NODE_');
}

/** What ValidateVolumeCapabilities is asked to confirm. */
export interface ValidationRequest {
  volume_context?: Record<string, string>;
  volume_capabilities?: VolumeCapability[];
  parameters?: Record<string, string>;
  mutable_parameters?: Record<string, string>;
}

/** Why the plugin cannot serve each of these capabilities (none: []). */
export function capabilityProblems(capabilities: readonly VolumeCapability[], kind: VolumeKind): string[] {
  return capabilities
    .map((capability) => capabilityProblem(capability, kind))
    .filter((problem): problem is string => problem !== null);
}

/** ValidateVolumeCapabilities' answer: everything asked for confirmed, or the problems found. */
export function validationAnswer(request: ValidationRequest, problems: readonly string[]): object {
  if (problems.length > 0) return { message: problems.join('; ') };
  return {
    confirmed: {
      volume_context: request.volume_context ?? {},
      volume_capabilities: request.volume_capabilities ?? [],
      parameters: request.parameters ?? {},
      mutable_parameters: request.mutable_parameters ?? {},
    },
  };
}

export function requireCapabilities(
  capabilities: VolumeCapability[] | undefined,
  kind: VolumeKind,
): VolumeCapability[] {
  if (!capabilities || capabilities.length === 0) throw invalidArgument('volume_capabilities are required');
  for (const capability of capabilities) {
    const problem = capabilityProblem(capability, kind);
    if (problem) throw invalidArgument(problem);
  }
  return capabilities;
}

/**
 * A node call's capability. A multi-node mode on a volume that has none is FAILED_PRECONDITION, as
 * CSI says for a CO that exceeds the volume's capabilities; anything else unusable INVALID_ARGUMENT.
 */
export function parseCapability(
  capability: VolumeCapability | null | undefined,
  field: string,
  kind: VolumeKind,
): ParsedCapability {
  if (!capability) throw invalidArgument(`${field} is required`);
  const problem = capabilityProblem(capability, kind);
  const accessMode = capability.access_mode?.mode;
  if (problem && accessMode && isMultiNode(accessMode) && !ACCESS_MODES[kind].includes(accessMode))
    throw failedPrecondition(`${field}: ${problem}`);
  if (problem || !accessMode) throw invalidArgument(`${field}: ${problem}`);
  return {
    accessType: capability.access_type!,
    accessMode,
    fsType: (capability.mount?.fs_type || DEFAULT_FS_TYPE) as FilesystemType,
    mountFlags: capability.mount?.mount_flags ?? [],
    readOnly: READ_ONLY_MODES.includes(accessMode),
    multiNode: isMultiNode(accessMode),
  };
}

export interface CapacityLimits {
  blockSize: number;
  defaultBytes: number;
  minimumBytes: number;
  maximumBytes: number;
}

/** The size a new volume gets: within the range, a multiple of the block size, within limits. */
export function chooseCapacity(range: CapacityRange | null | undefined, limits: CapacityLimits): number {
  const required = range?.required_bytes ?? 0;
  const limit = range?.limit_bytes ?? 0;
  if (required < 0 || limit < 0) throw invalidArgument('capacity_range must not be negative');
  if (limit > 0 && required > limit)
    throw outOfRange(`required_bytes ${required} is larger than limit_bytes ${limit}`);
  const wanted =
    required > 0 ? required : limit > 0 ? Math.min(limits.defaultBytes, limit) : limits.defaultBytes;
  const size = roundUp(Math.max(wanted, limits.minimumBytes), limits.blockSize);
  if (limit > 0 && size > limit)
    throw outOfRange(
      `no size within the capacity range [${required}, ${limit}] is a multiple of ${limits.blockSize} ` +
        `and at least ${limits.minimumBytes} bytes`,
    );
  if (size > limits.maximumBytes)
    throw outOfRange(`${size} bytes is more than the largest volume, ${limits.maximumBytes} bytes`);
  return size;
}

export function fitsRange(bytes: number, range: CapacityRange | null | undefined): boolean {
  const required = range?.required_bytes ?? 0;
  const limit = range?.limit_bytes ?? 0;
  return bytes >= required && (limit === 0 || bytes <= limit);
}

export function roundUp(value: number, multiple: number): number {
  return Math.ceil(value / multiple) * multiple;
}
