/*
 * A containerd daemon of a test's own: its root, state, sockets and config on a tmpfs it mounts for
 * itself, so that a system containerd (/run/containerd, /var/lib/containerd) is never touched. The
 * tmpfs also gives the overlayfs snapshotter an upper directory it accepts (not an overlay, as / is
 * inside many containers) and takes the unpacked layers away with it. Root only: it mounts.
 */
import { ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Plugins an image import does not use, left out so they neither start nor look at the host. */
const DISABLED_PLUGINS = [
  'io.containerd.grpc.v1.cri',
  'io.containerd.snapshotter.v1.aufs',
  'io.containerd.snapshotter.v1.btrfs',
  'io.containerd.snapshotter.v1.devmapper',
  'io.containerd.snapshotter.v1.zfs',
];

export class PrivateContainerd {
  private readonly exited: Promise<void>;
  private running = true;
  /** Why the daemon could not be started (spawn's error), if it could not. */
  private spawnError = '';

  private constructor(
    readonly directory: string,
    readonly socket: string,
    private readonly logFile: string,
    private readonly daemon: ChildProcess,
  ) {
    this.exited = new Promise((resolve) => {
      const gone = (): void => {
        this.running = false;
        resolve();
      };
      daemon.once('exit', gone);
      daemon.once('error', (error) => {
        this.spawnError = `${error.message} (scripts/install-deps.sh installs containerd)\n`;
        gone();
      });
    });
  }

  /** Starts containerd and waits until it answers `ctr version`. */
  static async start(timeoutMs: number): Promise<PrivateContainerd> {
    const directory = mkdtempSync(join(tmpdir(), 'vduse-csi-containerd-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'mode=0700', 'tmpfs', directory]);
    const socket = join(directory, 'containerd.sock');
    const config = join(directory, 'config.toml');
    const quoted = (value: string): string => JSON.stringify(value);
    writeFileSync(
      config,
      [
        'version = 2',
        `root = ${quoted(join(directory, 'root'))}`,
        `state = ${quoted(join(directory, 'state'))}`,
        `disabled_plugins = [${DISABLED_PLUGINS.map(quoted).join(', ')}]`,
        '[grpc]',
        `  address = ${quoted(socket)}`,
        '[ttrpc]',
        `  address = ${quoted(`${socket}.ttrpc`)}`,
        '[plugins."io.containerd.internal.v1.opt"]',
        `  path = ${quoted(join(directory, 'opt'))}`,
        '',
      ].join('\n'),
    );
    const logFile = join(directory, 'containerd.log');
    const log = openSync(logFile, 'w');
    const daemon = spawn('containerd', ['--config', config], { stdio: ['ignore', log, log] });
    closeSync(log);
    const containerd = new PrivateContainerd(directory, socket, logFile, daemon);
    try {
      await containerd.waitUntilServing(timeoutMs);
    } catch (error) {
      await containerd.stop();
      throw error;
    }
    return containerd;
  }

  private async waitUntilServing(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!this.running)
        throw new Error(`containerd exited while starting: ${this.spawnError}${this.logTail()}`);
      const answer = await this.tryCtr(['version'], 10_000);
      if (answer.code === 0) return;
      if (Date.now() > deadline)
        throw new Error(
          `containerd did not answer within ${timeoutMs} ms: ${answer.stderr}\n${this.logTail()}`,
        );
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** Runs ctr against this daemon; throws with its output and the daemon's log when it fails. */
  async ctr(args: string[], timeoutMs: number): Promise<string> {
    const result = await this.tryCtr(args, timeoutMs);
    if (result.code !== 0)
      throw new Error(`ctr ${args.join(' ')} failed (${result.code}): ${result.stderr}\n${this.logTail()}`);
    return result.stdout;
  }

  private tryCtr(
    args: string[],
    timeoutMs: number,
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) =>
      execFile(
        'ctr',
        ['--address', this.socket, ...args],
        { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
        (error, stdout, stderr) =>
          resolve({
            code: error ? (typeof error.code === 'number' ? error.code : -1) : 0,
            stdout,
            stderr: error && !stderr ? error.message : stderr,
          }),
      ),
    );
  }

  /** The daemon's last log lines (the reason a call failed is often only there). */
  logTail(lines = 20): string {
    const log = readFileSync(this.logFile, 'utf8').trimEnd().split('\n');
    return `--- containerd log, last ${lines} lines ---\n${log.slice(-lines).join('\n')}`;
  }

  /** Stops the daemon (SIGTERM; SIGKILL when it has not exited after a minute) and removes its tmpfs. */
  async stop(): Promise<void> {
    if (this.running) {
      this.daemon.kill('SIGTERM');
      const killer = setTimeout(() => this.daemon.kill('SIGKILL'), 60_000);
      await this.exited;
      clearTimeout(killer);
    }
    // Recursively: an image mounted inside and left there by a failed case goes too.
    execFileSync('umount', ['--recursive', this.directory]);
    rmdirSync(this.directory);
  }
}
