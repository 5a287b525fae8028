import { Server } from 'node:net';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { log, setLogLevel } from '../log';
import { AdminRequest, adminSocketPath, callAdmin, listenAdmin } from '../daemon/admin-socket';
import { spawnSuccessor, stopSuccessor } from '../daemon/successor';
import { BlkDeviceServer, BlkServeOptions } from '../daemon/blk-device-server';
import { DEFAULT_STATE_DIR } from '../daemon/device-record';
import { StartFailure, startFailureLine } from '../daemon/start-failure';
import { copyServedImage } from '../daemon/copy-target';
import { BackendDescriptor, describeBackend, parseRbdLocation } from '../backend/descriptor';
import { buildId } from './build-id';
import { stopRequests } from './stop-requests';
import { validateDeviceName } from '../vdpa';
import { parseBytes, parseInteger } from './units';
import { MAX_QUEUES, MAX_QUEUE_SIZE, checkDeviceShape } from '../daemon/device-shape';

export const BLK_USAGE = `usage:
  vduse-csi blk serve --file PATH [--name NAME] [--file PATH --name NAME ...] [--size BYTES]
                      [--queues N] [--queue-size N] [--block-size 512|4096] [--read-only]
                      [--bounce-size BYTES] [--state-dir DIR] [--log-level LEVEL]
                      [--keep-standby] [--standby] [--keep-allocation] [--copy-dir DIR ...]
                      [--large-io-helpers]
  vduse-csi blk serve --rbd POOL[/NAMESPACE]/IMAGE [--name NAME] [--ceph-conf FILE] [--id USER]
                      [--keyring FILE] [...the options above]
      (--rbd serves a Ceph RBD image through librbd, holding its exclusive lock; a missing image
       is created when --size is given; --id is the cephx user without "client.";
       several --file/--rbd with --name in the same order: one process serves them all, sharing its threads;
       --keep-standby keeps a warm standby server that takes over within milliseconds if this one
       dies; --standby waits for the live server of the device to go, then takes over;
       --keep-allocation: DISCARD and WRITE_ZEROES never free the image's blocks (thick volumes);
       --copy-dir: where the admin op copy may write, default the directory of each image;
       --large-io-helpers: image-file requests of 128 KiB or more go to helper threads, as with
       daemon run)
  vduse-csi blk resize --name NAME --size BYTES [--state-dir DIR]
  vduse-csi blk handover --name NAME [--state-dir DIR]
      (the live server lets go of the device without removing it, for a standby to take over)`;

export interface ServeCommand {
  /** One per --file; --name pairs with --file in order (default vduse-blk<i>). */
  devices: BlkServeOptions[];
  /** Wait for the device's live server to let go of it, then take over (--standby). */
  standby: boolean;
  /** Keep a warm standby server running beside this one (--keep-standby). */
  keepStandby: boolean;
}

export function parseServeOptions(argv: string[]): ServeCommand {
  const { values, tokens } = parseArgs({
    args: argv,
    strict: true,
    tokens: true,
    options: {
      file: { type: 'string', multiple: true },
      rbd: { type: 'string', multiple: true },
      'ceph-conf': { type: 'string' },
      id: { type: 'string' },
      keyring: { type: 'string' },
      size: { type: 'string' },
      name: { type: 'string', multiple: true },
      queues: { type: 'string', default: '1' },
      'queue-size': { type: 'string', default: '256' },
      'block-size': { type: 'string', default: '512' },
      'read-only': { type: 'boolean', default: false },
      'bounce-size': { type: 'string' },
      'state-dir': { type: 'string', default: DEFAULT_STATE_DIR },
      'log-level': { type: 'string', default: 'info' },
      standby: { type: 'boolean', default: false },
      'keep-standby': { type: 'boolean', default: false },
      'keep-allocation': { type: 'boolean', default: false },
      'copy-dir': { type: 'string', multiple: true },
      'large-io-helpers': { type: 'boolean', default: false },
    },
  });
  const client = { conf: values['ceph-conf'], user: values.id, keyring: values.keyring };
  const backends = tokens.flatMap((token): BackendDescriptor[] => {
    if (token.kind !== 'option' || token.value === undefined) return [];
    if (token.name === 'file') return [{ kind: 'file', path: token.value }];
    if (token.name === 'rbd') return [{ kind: 'rbd', location: parseRbdLocation(token.value), client }];
    return [];
  });
  if ((values.standby || values['keep-standby']) && backends.length > 1)
    throw new Error('--standby and --keep-standby serve a single device');
  const names = values.name ?? backends.map((_, index) => `vduse-blk${index}`);
  if (backends.length === 0) throw new Error('--file or --rbd is required');
  if (names.length !== backends.length) throw new Error('give one --name per --file or --rbd (or none)');
  const rbd = backends.some((backend) => backend.kind === 'rbd');
  if (!rbd && Object.values(client).some((value) => value !== undefined))
    throw new Error('--ceph-conf, --id and --keyring go with --rbd');
  if (rbd && values['keep-allocation'])
    throw new Error('--keep-allocation is for image files (an RBD image is thin; its pool sets the space)');
  if (new Set(names).size !== names.length) throw new Error('device names must differ');
  const shape = checkDeviceShape(
    {
      queues: parseInteger(values.queues!, '--queues', 1, MAX_QUEUES),
      queueSize: parseInteger(values['queue-size']!, '--queue-size', 2, MAX_QUEUE_SIZE),
      blockSize: parseInteger(values['block-size']!, '--block-size', 512, 4096),
      ...(values.size === undefined ? {} : { sizeBytes: parseBytes(values.size) }),
    },
    { queues: '--queues', queueSize: '--queue-size', blockSize: '--block-size', sizeBytes: '--size' },
  );
  const shared: Omit<BlkServeOptions, 'name' | 'backend' | 'copyDirs'> = {
    ...shape,
    readOnly: values['read-only']!,
    keepAllocation: values['keep-allocation']!,
    largeIoHelpers: values['large-io-helpers']!,
    logLevel: values['log-level']!,
    stateDir: values['state-dir']!,
  };
  if (values['bounce-size'] !== undefined) shared.bounceBytes = parseBytes(values['bounce-size']);
  return {
    devices: backends.map((backend, index) => ({
      ...shared,
      name: validateDeviceName(names[index]!),
      backend,
      copyDirs: (values['copy-dir'] ?? (backend.kind === 'file' ? [dirname(backend.path)] : [])).map((dir) =>
        resolve(dir),
      ),
    })),
    standby: values.standby!,
    keepStandby: values['keep-standby']!,
  };
}

const STARTED_AT_MS = Date.now();

/** The line a standby prints once it is warm, whatever the log level: supervisors wait for it. */
export function announceStandby(name: string): void {
  process.stdout.write(`${JSON.stringify({ standby: name, pid: process.pid })}\n`);
}

/** The line a server that failed to start prints, whatever the log level: the CSI plugin reads it. */
export function announceStartFailure(failure: StartFailure): void {
  process.stdout.write(`${startFailureLine(failure, process.pid)}\n`);
}

/** `vduse-csi blk serve`: serves until SIGTERM or SIGINT (then removes the devices) or a hand-over. */
export async function serve(argv: string[]): Promise<void> {
  const { devices, standby, keepStandby } = parseServeOptions(argv);
  setLogLevel(devices[0]!.logLevel);
  // Both listen from the start. A server's SIGTERM right after it announced its device must still
  // remove the device; a standby's makes it close what it opened ahead (an RBD image it kept open
  // would hold the image's watch for ~30 s after its exit) and end.
  const stop = stopRequests();
  const running: Array<{ server: BlkDeviceServer; admin?: Server }> = [];
  let handOverRequested!: () => void;
  const handOver = new Promise<string>((resolve) => (handOverRequested = () => resolve('hand-over')));
  const stopAll = async (onError?: (error: unknown, device: string) => void): Promise<void> => {
    for (const { server, admin } of running.splice(0)) {
      admin?.close();
      try {
        await server.stop();
      } catch (error) {
        if (!onError) throw error;
        onError(error, server.options.name);
      }
    }
  };
  try {
    for (const options of devices) {
      const server = standby
        ? await BlkDeviceServer.standBy(options, () => announceStandby(options.name), stop.signal)
        : await BlkDeviceServer.start(options);
      if (!server) {
        const why = stop.signal.aborted ? 'stopped' : 'the device was removed';
        log.info(`${why} while standing by`, { device: options.name });
        return;
      }
      // Running before its admin socket listens: a failure to listen must still remove the device.
      const entry: (typeof running)[number] = { server };
      running.push(entry);
      entry.admin = await listenAdmin(adminSocketPath(options.stateDir, options.name), (request) =>
        answerAdmin(server, request, handOverRequested),
      );
      process.stdout.write(`${server.path}\n${JSON.stringify({ name: options.name, path: server.path })}\n`);
      log.info('serving', {
        device: options.name,
        path: server.path,
        image: describeBackend(options.backend),
      });
    }
  } catch (error) {
    // The devices served so far go again; a failure to remove one is logged beside this error.
    await stopAll((cleanup, device) =>
      log.error('could not remove a device after another failed to start', {
        device,
        error: String(cleanup),
      }),
    );
    if (error instanceof StartFailure) announceStartFailure(error);
    throw error;
  }
  const successor = keepStandby
    ? spawnSuccessor(['blk', 'serve', ...argv.filter((arg) => arg !== '--standby'), '--standby'])
    : undefined;
  const reason = await Promise.race([handOver, stop.reason]);
  log.info(reason === 'hand-over' ? 'handing the devices over' : 'stopping', {
    devices: devices.map((options) => options.name),
    reason,
  });
  await stopSuccessor(successor);
  if (reason !== 'hand-over') return stopAll();
  for (const { server, admin } of running.splice(0)) {
    admin?.close();
    await server.handOver();
  }
}

/** What the admin socket's answers need of a device server. */
export type AdminServed = Pick<
  BlkDeviceServer,
  'options' | 'path' | 'capacityBytes' | 'resize' | 'whilePaused'
>;

/** Performs one admin request for a device server and answers with its status. */
export async function answerAdmin(
  server: AdminServed,
  request: AdminRequest,
  handOverRequested: () => void,
): Promise<Record<string, unknown>> {
  const { name } = server.options;
  if (request.op === 'resize') await server.resize(request.bytes);
  if (request.op === 'copy') await copyServedImage(server, request.target);
  if (request.op === 'handover') handOverRequested();
  return {
    name,
    path: server.path,
    capacityBytes: server.capacityBytes,
    pid: process.pid,
    build: buildId(),
    startedAtMs: STARTED_AT_MS,
  };
}

/** `vduse-csi blk handover`: the running server of NAME lets go of it, for a standby to take over. */
export async function handover(argv: string[]): Promise<void> {
  const { name, stateDir } = parseNameOption(argv);
  process.stdout.write(
    `${JSON.stringify(await callAdmin(adminSocketPath(stateDir, name), { op: 'handover' }))}\n`,
  );
}

function parseNameOption(
  argv: string[],
  extra: string[] = [],
): { name: string; stateDir: string; values: Record<string, string | undefined> } {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      name: { type: 'string' },
      'state-dir': { type: 'string', default: DEFAULT_STATE_DIR },
      ...Object.fromEntries(extra.map((option) => [option, { type: 'string' as const }])),
    },
  });
  if (!values.name) throw new Error('--name is required');
  return { name: validateDeviceName(values.name), stateDir: values['state-dir']!, values };
}

/** `vduse-csi blk resize`: asks the running server of NAME to grow its device. */
export async function resize(argv: string[]): Promise<void> {
  const { name, stateDir, values } = parseNameOption(argv, ['size']);
  if (!values.size) throw new Error('--size is required');
  const reply = await callAdmin(adminSocketPath(stateDir, name), {
    op: 'resize',
    bytes: parseBytes(values.size),
  });
  process.stdout.write(`${JSON.stringify(reply)}\n`);
}
