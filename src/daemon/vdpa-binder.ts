import { ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { join } from 'node:path';
import { Interface, createInterface } from 'node:readline';
import { Serial } from '../sys/serial';

/** Keeps at most this much of the bind process's stderr, for the error of a bind it died in. */
const STDERR_LIMIT = 4096;

interface BindProcess {
  child: ChildProcessWithoutNullStreams;
  answers: Interface;
  stderr: () => string;
  closed: () => boolean;
}

/**
 * vdpa DEV_NEW through a bind process of its own (dist/bundle/vdpa-bind.js; see vdpa-bind.ts for
 * why), started at the first bind and kept for the next ones: the adds of a burst cost one process
 * start. Given `idleMs`, it ends that long after the last bind, so a node whose volumes are all
 * staged does not keep a whole Node process (about 9 MiB of its own) for binds that may never come;
 * else it lasts until `close`. One bind at a time, as the kernel runs them. A bind process that died
 * is replaced at the next bind.
 */
export class VdpaBinder {
  private process: BindProcess | undefined;
  private readonly turns = new Serial();
  private bindsUnderWay = 0;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(private readonly idleMs?: number) {}

  bind(name: string): Promise<void> {
    this.bindsUnderWay++;
    clearTimeout(this.idleTimer);
    return this.turns
      .run(() => this.request(name))
      .finally(() => {
        if (--this.bindsUnderWay === 0 && this.idleMs !== undefined)
          this.idleTimer = setTimeout(() => void this.close(), this.idleMs).unref();
      });
  }

  /** One bind through a bind process started for it alone (a process serving one device, say). */
  static async bindOnce(name: string): Promise<void> {
    const binder = new VdpaBinder();
    try {
      await binder.bind(name);
    } finally {
      await binder.close();
    }
  }

  /** Ends the bind process once its binds are answered; a later bind starts another. */
  close(): Promise<void> {
    clearTimeout(this.idleTimer);
    return this.turns.run(async () => {
      const running = this.process;
      this.process = undefined;
      // Gone already (killed, say): its close event has passed, and waiting for it would hang.
      if (!running || running.closed()) return;
      const exited = new Promise<void>((resolve) => running.child.once('close', () => resolve()));
      running.child.stdin.end();
      await exited;
    });
  }

  private running(): BindProcess {
    if (this.process?.closed()) this.process = undefined;
    return (this.process ??= startBindProcess());
  }

  private request(name: string): Promise<void> {
    const running = this.running();
    return new Promise((resolve, reject) => {
      const answered = (line: string): void => {
        running.child.off('close', died);
        running.child.off('error', failed);
        const answer = JSON.parse(line) as { ok?: true; error?: string };
        if (answer.ok) resolve();
        else reject(new Error(answer.error ?? `vdpa-bind answered ${line}`));
      };
      const gone = (why: string): void => {
        running.answers.off('line', answered);
        running.child.off('close', died);
        running.child.off('error', failed);
        if (this.process === running) this.process = undefined;
        reject(new Error(running.stderr().trim() || why));
      };
      const died = (code: number | null, signal: NodeJS.Signals | null): void =>
        gone(`vdpa-bind exited with ${signal ?? `code ${code}`}`);
      const failed = (error: Error): void => gone(`vdpa-bind could not run: ${error.message}`);
      running.answers.once('line', answered);
      running.child.once('close', died);
      running.child.once('error', failed);
      running.child.stdin.write(`${name}\n`);
    });
  }
}

function startBindProcess(): BindProcess {
  const child = spawn(process.execPath, [join(__dirname, 'vdpa-bind.js')], { stdio: 'pipe' });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-STDERR_LIMIT);
  });
  let closed = false;
  child.once('close', () => (closed = true));
  // Its death is reported to the bind waiting for it; a write to a dead one is not another error.
  child.on('error', () => undefined);
  child.stdin.on('error', () => undefined);
  return {
    child,
    answers: createInterface({ input: child.stdout }),
    stderr: () => stderr,
    closed: () => closed,
  };
}
