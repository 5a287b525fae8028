import { Server } from 'node:net';
import { parseArgs } from 'node:util';
import { log, setLogLevel } from '../log';
import { adminSocketPath, callAdmin, listenAdmin } from '../daemon/admin-socket';
import { BlkDeviceServer, BlkServeOptions } from '../daemon/blk-device-server';
import { DEFAULT_STATE_DIR } from '../daemon/device-record';
import { validateDeviceName } from '../vdpa';
import { parseBytes, parseInteger } from './units';

export const BLK_USAGE = `usage:
  vduse-csi blk serve --file PATH [--name NAME] [--file PATH --name NAME ...] [--size BYTES]
                      [--queues N] [--queue-size N] [--block-size 512|4096] [--read-only]
                      [--bounce-size BYTES] [--state-dir DIR] [--log-level LEVEL]
      (several --file/--name pairs: one process serves them all, sharing its threads)
  vduse-csi blk resize --name NAME --size BYTES [--state-dir DIR]`;

const BLOCK_SIZES = [512, 1024, 2048, 4096];

/** One BlkServeOptions per --file; --name pairs with --file in order (default vduse-blk<i>). */
export function parseServeOptions(argv: string[]): BlkServeOptions[] {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      file: { type: 'string', multiple: true },
      size: { type: 'string' },
      name: { type: 'string', multiple: true },
      queues: { type: 'string', default: '1' },
      'queue-size': { type: 'string', default: '256' },
      'block-size': { type: 'string', default: '512' },
      'read-only': { type: 'boolean', default: false },
      'bounce-size': { type: 'string' },
      'state-dir': { type: 'string', default: DEFAULT_STATE_DIR },
      'log-level': { type: 'string', default: 'info' },
    },
  });
  const files = values.file ?? [];
  const names = values.name ?? files.map((_, index) => `vduse-blk${index}`);
  if (files.length === 0) throw new Error('--file is required');
  if (names.length !== files.length) throw new Error('give one --name per --file (or none)');
  if (new Set(names).size !== names.length) throw new Error('device names must differ');
  const queueSize = parseInteger(values['queue-size']!, '--queue-size', 2, 1024);
  if ((queueSize & (queueSize - 1)) !== 0)
    throw new Error(`--queue-size must be a power of two, got ${queueSize}`);
  const blockSize = parseInteger(values['block-size']!, '--block-size', 512, 4096);
  if (!BLOCK_SIZES.includes(blockSize))
    throw new Error(`--block-size must be one of ${BLOCK_SIZES.join(', ')}`);
  const shared: Omit<BlkServeOptions, 'name' | 'imagePath'> = {
    queues: parseInteger(values.queues!, '--queues', 1, 64),
    queueSize,
    blockSize,
    readOnly: values['read-only']!,
    logLevel: values['log-level']!,
    stateDir: values['state-dir']!,
  };
  if (values.size !== undefined) {
    shared.sizeBytes = parseBytes(values.size);
    if (shared.sizeBytes % blockSize !== 0 || shared.sizeBytes === 0) {
      throw new Error(`--size must be a positive multiple of the block size ${blockSize}`);
    }
  }
  if (values['bounce-size'] !== undefined) shared.bounceBytes = parseBytes(values['bounce-size']);
  return files.map((imagePath, index) => ({ ...shared, name: validateDeviceName(names[index]!), imagePath }));
}

/** `vduse-csi blk serve`: serves until SIGTERM or SIGINT, then removes the devices. */
export async function serve(argv: string[]): Promise<void> {
  const devices = parseServeOptions(argv);
  setLogLevel(devices[0]!.logLevel);
  const running: Array<{ server: BlkDeviceServer; admin: Server }> = [];
  const stopAll = async (): Promise<void> => {
    for (const { server, admin } of running.splice(0)) {
      admin.close();
      await server.stop();
    }
  };
  try {
    for (const options of devices) {
      const server = await BlkDeviceServer.start(options);
      const socketPath = adminSocketPath(options.stateDir, options.name);
      const admin = await listenAdmin(socketPath, async (request) => {
        if (request.op === 'resize') await server.resize(request.bytes);
        return { name: options.name, path: server.path, capacityBytes: server.capacityBytes };
      });
      running.push({ server, admin });
      process.stdout.write(`${server.path}\n${JSON.stringify({ name: options.name, path: server.path })}\n`);
      log.info('serving', {
        device: options.name,
        path: server.path,
        image: options.imagePath,
        admin: socketPath,
      });
    }
  } catch (error) {
    await stopAll();
    throw error;
  }
  const signal = await new Promise<string>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  log.info('stopping', { devices: devices.map((options) => options.name), signal });
  await stopAll();
}

/** `vduse-csi blk resize`: asks the running server of NAME to grow its device. */
export async function resize(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      name: { type: 'string' },
      size: { type: 'string' },
      'state-dir': { type: 'string', default: DEFAULT_STATE_DIR },
    },
  });
  if (!values.name || !values.size) throw new Error('--name and --size are required');
  const name = validateDeviceName(values.name);
  const reply = await callAdmin(adminSocketPath(values['state-dir']!, name), {
    op: 'resize',
    bytes: parseBytes(values.size),
  });
  process.stdout.write(`${JSON.stringify(reply)}\n`);
}
