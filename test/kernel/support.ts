import { ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

export const CLI = resolve(__dirname, '../../bundle/vduse-csi.js');
/** The blk-only bundle device servers run: it starts much faster than the whole CLI. */
export const BLK_CLI = resolve(__dirname, '../../bundle/vduse-blk.js');

/** How long a takeover may take under software emulation (for RBD: lock break, blocklist, new connection). */
export const TAKEOVER_TIMEOUT_MS = 300_000;

/** Kernel tests need VDUSE; they fail (never skip) without it, so a rig that lost the module is seen. */
export function requireVduse(): void {
  if (!existsSync('/dev/vduse/control')) {
    throw new Error(
      '/dev/vduse/control is missing: run kernel tests through test/vm/run.sh (it loads vduse)',
    );
  }
}

export function scratchDir(prefix: string): string {
  const base = process.env.VDUSE_CSI_SCRATCH ?? '/tmp';
  return mkdtempSync(join(base, `${prefix}-`));
}

export function run(command: string, args: string[], input?: string): string {
  return execFileSync(command, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}

export function sh(script: string): string {
  return run('bash', ['-euo', 'pipefail', '-c', script]);
}

/** sh without blocking this process: commands of several flows run at once. */
export async function shAsync(script: string): Promise<string> {
  const { stdout } = await promisify(execFile)('bash', ['-euo', 'pipefail', '-c', script], {
    encoding: 'utf8',
  });
  return stdout;
}

/**
 * Marks the kernel log now; the function returned gives the lines logged after the mark. Earlier
 * lines belong to other tests (capacity.test.ts makes I/O errors on purpose). A mark that rotated
 * out of the ring buffer gives the whole log, so nothing is missed.
 */
export function kernelLogFromNow(label: string): () => string {
  const mark = `vduse-csi-test: ${label} ${process.pid}-${Date.now()}`;
  writeFileSync('/dev/kmsg', `${mark}\n`);
  return () => {
    const log = sh('dmesg');
    const at = log.lastIndexOf(mark);
    return at < 0 ? log : log.slice(at + mark.length);
  };
}

export interface ServedDevice {
  name: string;
  path: string;
  /** Every device the server announced, in order (one per `--name`; the first is `name`/`path`). */
  devices: Array<{ name: string; path: string }>;
  process: ChildProcess;
  /** Everything the server (and the standbys it started, which share its pipes) printed so far. */
  stdout: () => string;
  stderr: () => string;
  /** SIGTERM and wait; resolves with the exit code. */
  stop(): Promise<number | null>;
}

/**
 * Starts `vduse-csi blk serve` and waits for the lines announcing its block devices: one per
 * `--name` in `args` (or one when none is given).
 */
export function serve(args: string[], timeoutMs = 90_000): Promise<ServedDevice> {
  const expected = Math.max(1, args.filter((arg) => arg === '--name').length);
  const child = spawn(process.execPath, [BLK_CLI, 'blk', 'serve', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(`blk serve did not announce ${expected} device(s) in ${timeoutMs} ms; stderr:\n${stderr}`),
      );
    }, timeoutMs);
    const check = (): void => {
      const devices = stdout
        .split('\n')
        .slice(0, -1)
        .filter((candidate) => candidate.startsWith('{') && candidate.includes('"path"'))
        .map((line) => JSON.parse(line) as { name: string; path: string });
      if (devices.length < expected) return;
      clearTimeout(timer);
      resolvePromise({
        ...devices[0]!,
        devices,
        process: child,
        stdout: () => stdout,
        stderr: () => stderr,
        stop: async () => {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
          return exited;
        },
      });
    };
    child.stdout.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`blk serve exited with ${code} before announcing a device; stderr:\n${stderr}`));
    });
  });
}

/** Runs the CLI to completion, for its error paths. */
export function runCli(args: string[]): { code: number; stdout: string; stderr: string } {
  try {
    const stdout = execFileSync(process.execPath, [BLK_CLI, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return { code: 0, stdout, stderr: '' };
  } catch (error) {
    const failed = error as { status: number; stdout: string; stderr: string };
    return { code: failed.status, stdout: failed.stdout, stderr: failed.stderr };
  }
}

export function vduseDevices(): string[] {
  return existsSync('/dev/vduse') ? readdirSync('/dev/vduse').filter((entry) => entry !== 'control') : [];
}

export function vdpaDevices(): string[] {
  return existsSync('/sys/bus/vdpa/devices') ? readdirSync('/sys/bus/vdpa/devices') : [];
}

/** Asserts the kernel holds no VDUSE or vdpa device: a test left nothing behind. */
export function assertNoDevices(): void {
  const leftovers = [...vduseDevices(), ...vdpaDevices()];
  if (leftovers.length > 0) throw new Error(`devices left behind: ${leftovers.join(', ')}`);
}

export async function waitFor(what: string, predicate: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((done) => setTimeout(done, 50));
  }
}

export function blockDeviceSize(path: string): number {
  return Number(run('blockdev', ['--getsize64', path]).trim());
}

export function sha256(path: string): string {
  return run('sha256sum', [path]).split(' ')[0]!;
}

export interface FioRun {
  process: ChildProcess;
  /** fio's exit code and its output (the JSON report, and any error it printed). */
  done: Promise<{ code: number | null; output: string }>;
}

/**
 * fio's 4k random writes at iodepth 32 over `sizeMiB` of a file system directory or a block
 * device, with crc32c verification of everything written (read back at the end).
 */
export function startVerifiedFio(
  target: { directory: string } | { filename: string },
  sizeMiB: number,
): FioRun {
  const where = 'directory' in target ? `--directory=${target.directory}` : `--filename=${target.filename}`;
  return startFio([
    '--name=verify',
    where,
    '--rw=randwrite',
    '--bs=4k',
    `--size=${sizeMiB}M`,
    '--ioengine=libaio',
    '--iodepth=32',
    '--direct=1',
    '--verify=crc32c',
    '--do_verify=1',
    '--verify_fatal=1',
    '--output-format=json',
  ]);
}

/** Starts fio with `args`; its stdout and stderr are collected into the run's output. */
export function startFio(args: string[], env: NodeJS.ProcessEnv = process.env): FioRun {
  const child = spawn('fio', args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  return {
    process: child,
    done: new Promise((resolve) => child.once('exit', (code) => resolve({ code, output }))),
  };
}
