import { FilesystemType, SUPPORTED_FILESYSTEMS } from '../node/filesystem';
import { invalidArgument, outOfRange } from './errors';
import { AccessModeName, CapacityRange, VolumeCapability } from './messages';

export const SUPPORTED_ACCESS_MODES: readonly AccessModeName[] = [
  'SINGLE_NODE_WRITER',
  'SINGLE_NODE_SINGLE_WRITER',
  'SINGLE_NODE_MULTI_WRITER',
  'SINGLE_NODE_READER_ONLY',
];
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
}

/** Why the plugin cannot serve a capability, or null when it can. */
export function capabilityProblem(capability: VolumeCapability | null | undefined): string | null {
  if (!capability) return 'a volume capability is empty';
  const mode = capability.access_mode?.mode;
  if (!mode || mode === 'UNKNOWN') return 'access_mode is required';
  if (!SUPPORTED_ACCESS_MODES.includes(mode))
    return `access mode ${mode} is not supported: volumes are local to one node`;
  if (capability.access_type === 'mount') {
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

/** What ValidateVolumeCapabilities is asked to confirm. */
export interface ValidationRequest {
  volume_context?: Record<string, string>;
  volume_capabilities?: VolumeCapability[];
  parameters?: Record<string, string>;
  mutable_parameters?: Record<string, string>;
}

/** Why the plugin cannot serve each of these capabilities (none: []). */
export function capabilityProblems(capabilities: readonly VolumeCapability[]): string[] {
  return capabilities.map(capabilityProblem).filter((problem): problem is string => problem !== null);
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

export function requireCapabilities(capabilities: VolumeCapability[] | undefined): VolumeCapability[] {
  if (!capabilities || capabilities.length === 0) throw invalidArgument('volume_capabilities are required');
  for (const capability of capabilities) {
    const problem = capabilityProblem(capability);
    if (problem) throw invalidArgument(problem);
  }
  return capabilities;
}

export function parseCapability(
  capability: VolumeCapability | null | undefined,
  field: string,
): ParsedCapability {
  if (!capability) throw invalidArgument(`${field} is required`);
  const problem = capabilityProblem(capability);
  if (problem) throw invalidArgument(`${field}: ${problem}`);
  const accessMode = capability.access_mode!.mode!;
  return {
    accessType: capability.access_type!,
    accessMode,
    fsType: (capability.mount?.fs_type || DEFAULT_FS_TYPE) as FilesystemType,
    mountFlags: capability.mount?.mount_flags ?? [],
    readOnly: accessMode === 'SINGLE_NODE_READER_ONLY',
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
