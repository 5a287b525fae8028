import { spawn } from 'node:child_process';
import { readdirSync, readlinkSync } from 'node:fs';
import { BlkDeviceServer, BlkServeOptions } from '../../src/daemon/blk-device-server';
import { StartFailure } from '../../src/daemon/start-failure';

/*
 * Starts one device server in this process (options as JSON in argv[2]), expecting the start to
 * fail, and prints one JSON line: the failure and the file descriptors the failed start left open.
 * server-start-failures.test.ts runs it, under `unshare --net` for a network namespace of its own.
 */

export interface ProbeResult {
  started: boolean;
  message?: string;
  kind?: string;
  step?: string;
  cleanupFailures?: string[];
  /** "fd -> target" of each descriptor open after the failure that was not before the start. */
  leakedFds: string[];
}

function openFds(): Map<string, string> {
  const fds = new Map<string, string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      fds.set(fd, readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      // the directory listing's own descriptor, closed by now
    }
  }
  return fds;
}

/**
 * A process's first child (the start's vdpa bind process) makes libuv open its SIGCHLD pipes, which
 * stay for the life of the process: they are opened before counting, not taken for a leak.
 */
function spawnOnce(): Promise<void> {
  return new Promise((resolve) => spawn('true').once('close', () => resolve()));
}

async function probe(options: BlkServeOptions): Promise<ProbeResult> {
  await spawnOnce();
  const before = openFds();
  try {
    const server = await BlkDeviceServer.start(options);
    await server.stop();
    return { started: true, leakedFds: [] };
  } catch (error) {
    const leakedFds = [...openFds()]
      .filter(([fd, target]) => before.get(fd) !== target)
      .map(([fd, target]) => `${fd} -> ${target}`);
    if (!(error instanceof StartFailure)) return { started: false, message: String(error), leakedFds };
    const { message, kind, step, cleanupFailures } = error;
    return { started: false, message, kind, step, cleanupFailures, leakedFds };
  }
}

probe(JSON.parse(process.argv[2]!) as BlkServeOptions).then(
  (result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exit(0);
  },
  (error: unknown) => {
    process.stderr.write(`probe failed: ${String(error)}\n`);
    process.exit(2);
  },
);
