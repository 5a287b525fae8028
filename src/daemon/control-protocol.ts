import { isAbsolute } from 'node:path';
import {
  BackendDescriptor,
  CephClientOptions,
  checkRbdSharing,
  parseRbdLocation,
  rbdLocationText,
} from '../backend/descriptor';
import { validateDeviceName } from '../vdpa';
import { DeviceShape, checkDeviceShape } from './device-shape';
import { LineRequestError } from './json-line-socket';

/** The version of the control protocol this build speaks; a request names the one it was written for. */
export const CONTROL_VERSION = 1;

/** A device the daemon is asked to serve: created, or taken over when its record and device exist. */
export interface DeviceSpec extends DeviceShape {
  name: string;
  backend: BackendDescriptor;
  readOnly: boolean;
  /** DISCARD and WRITE_ZEROES never release the image's blocks (thick volumes). */
  keepAllocation: boolean;
}

/**
 * What a node's device daemon does on request (one JSON object per line on its control socket):
 * - add: serve a device (idempotent: the same device again answers its status);
 * - remove: unbind and destroy a device, its record and in-flight log (idempotent);
 * - status: the daemon and every device it serves; device: one device (code not-found if none);
 * - resize: grow a device and its image; copy: a point-in-time copy of an image file while the
 *   device's queues are held still;
 * - handover: let go of every device without removing any, and exit, for the daemon waiting for
 *   the lock (a newer build, say) to take them over.
 */
export type ControlRequest =
  | { v: 1; op: 'add'; device: DeviceSpec }
  | { v: 1; op: 'remove'; name: string }
  | { v: 1; op: 'status' }
  | { v: 1; op: 'device'; name: string }
  | { v: 1; op: 'resize'; name: string; bytes: number }
  | { v: 1; op: 'copy'; name: string; target: string }
  | { v: 1; op: 'handover' };

/** Kinds of refusal (`code` of a refused answer). */
export type ControlErrorCode = 'invalid' | 'not-found' | 'in-use' | 'environment' | 'image' | 'internal';

export function controlError(code: ControlErrorCode, message: string): LineRequestError {
  return new LineRequestError(message, code);
}

const MAX_PATH_BYTES = 4096;
const CEPH_USER = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** The request a parsed line holds, or an `invalid` refusal saying what is wrong with it. */
export function validControlRequest(value: unknown): ControlRequest {
  try {
    return checkRequest(value);
  } catch (error) {
    if (error instanceof LineRequestError) throw error;
    throw controlError('invalid', error instanceof Error ? error.message : String(error));
  }
}

function checkRequest(value: unknown): ControlRequest {
  const request = objectOf(value, 'a request');
  if (request.v !== CONTROL_VERSION)
    throw new Error(
      `this daemon speaks control protocol version ${CONTROL_VERSION}, not ${JSON.stringify(request.v)}`,
    );
  switch (request.op) {
    case 'status':
    case 'handover':
      onlyFields(request, ['v', 'op']);
      return { v: 1, op: request.op };
    case 'add':
      onlyFields(request, ['v', 'op', 'device']);
      return { v: 1, op: 'add', device: checkDeviceSpec(request.device) };
    case 'remove':
    case 'device':
      onlyFields(request, ['v', 'op', 'name']);
      return { v: 1, op: request.op, name: deviceName(request.name) };
    case 'resize':
      onlyFields(request, ['v', 'op', 'name', 'bytes']);
      if (!Number.isSafeInteger(request.bytes) || (request.bytes as number) <= 0)
        throw new Error('bytes must be a positive whole number');
      return { v: 1, op: 'resize', name: deviceName(request.name), bytes: request.bytes as number };
    case 'copy':
      onlyFields(request, ['v', 'op', 'name', 'target']);
      return {
        v: 1,
        op: 'copy',
        name: deviceName(request.name),
        target: absolutePath(request.target, 'target'),
      };
    default:
      throw new Error(`unknown op ${JSON.stringify(request.op)}`);
  }
}

function checkDeviceSpec(value: unknown): DeviceSpec {
  const spec = objectOf(value, 'device');
  onlyFields(spec, [
    'name',
    'backend',
    'queues',
    'queueSize',
    'blockSize',
    'sizeBytes',
    'readOnly',
    'keepAllocation',
  ]);
  if (typeof spec.readOnly !== 'boolean' || typeof spec.keepAllocation !== 'boolean')
    throw new Error('device readOnly and keepAllocation must be true or false');
  const backend = checkBackend(spec.backend);
  if (backend.kind === 'rbd' && spec.keepAllocation)
    throw new Error('keepAllocation is for image files (an RBD image is thin; its pool sets the space)');
  if (
    backend.kind === 'rbd' &&
    backend.sharing === 'read-only' &&
    (!spec.readOnly || spec.sizeBytes !== undefined)
  )
    throw new Error(
      'an RBD image shared read-only is served read-only, and never created or grown (no sizeBytes)',
    );
  const shape = checkDeviceShape(
    {
      queues: spec.queues as number,
      queueSize: spec.queueSize as number,
      blockSize: spec.blockSize as number,
      ...(spec.sizeBytes === undefined ? {} : { sizeBytes: spec.sizeBytes as number }),
    },
    { queues: 'queues', queueSize: 'queueSize', blockSize: 'blockSize', sizeBytes: 'sizeBytes' },
  );
  return {
    ...shape,
    name: deviceName(spec.name),
    backend,
    readOnly: spec.readOnly,
    keepAllocation: spec.keepAllocation,
  };
}

function checkBackend(value: unknown): BackendDescriptor {
  const backend = objectOf(value, 'backend');
  if (backend.kind === 'file') {
    onlyFields(backend, ['kind', 'path']);
    return { kind: 'file', path: absolutePath(backend.path, 'backend path') };
  }
  if (backend.kind !== 'rbd')
    throw new Error(`backend kind must be file or rbd, not ${JSON.stringify(backend.kind)}`);
  onlyFields(backend, ['kind', 'location', 'client', 'sharing']);
  const location = objectOf(backend.location, 'backend location');
  onlyFields(location, ['pool', 'namespace', 'image']);
  const names = [location.pool, location.namespace ?? 'x', location.image];
  if (!names.every((name) => typeof name === 'string' && !name.includes('/')))
    throw new Error('backend location pool, namespace and image must be names without /');
  const client = objectOf(backend.client, 'backend client');
  onlyFields(client, ['conf', 'user', 'keyring']);
  const checked: CephClientOptions = {};
  if (client.conf !== undefined) checked.conf = absolutePath(client.conf, 'backend client conf');
  if (client.keyring !== undefined) checked.keyring = absolutePath(client.keyring, 'backend client keyring');
  if (client.user !== undefined) {
    if (typeof client.user !== 'string' || !CEPH_USER.test(client.user))
      throw new Error('backend client user must be 1-128 of [A-Za-z0-9._-], without "client."');
    checked.user = client.user;
  }
  const sharing = checkRbdSharing(backend.sharing);
  return {
    kind: 'rbd',
    location: parseRbdLocation(
      rbdLocationText(location as { pool: string; namespace?: string; image: string }),
    ),
    client: checked,
    ...(sharing === undefined ? {} : { sharing }),
  };
}

function objectOf(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new Error(`${what} must be an object`);
  return value as Record<string, unknown>;
}

function onlyFields(object: Record<string, unknown>, allowed: string[]): void {
  const unknown = Object.keys(object).filter((key) => !allowed.includes(key));
  if (unknown.length > 0)
    throw new Error(`unknown field ${unknown.map((key) => JSON.stringify(key)).join(', ')}`);
}

function deviceName(value: unknown): string {
  if (typeof value !== 'string') throw new Error('name must be a string');
  return validateDeviceName(value);
}

function absolutePath(value: unknown, what: string): string {
  if (
    typeof value !== 'string' ||
    !isAbsolute(value) ||
    value.includes('\0') ||
    Buffer.byteLength(value) > MAX_PATH_BYTES
  )
    throw new Error(`${what} must be an absolute path of at most ${MAX_PATH_BYTES} bytes`);
  return value;
}
