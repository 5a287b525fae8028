import { execFile } from 'node:child_process';

export interface RunOptions {
  /** Kill the tool (SIGKILL) after this long. Default: 2 minutes. */
  timeoutMs?: number;
  /** Written to the tool's stdin, which is then closed. Without it stdin is closed at once. */
  input?: string;
}

export interface ToolOutput {
  stdout: string;
  stderr: string;
}

const DEFAULT_TIMEOUT_MS = 120_000;
const MAX_OUTPUT_BYTES = 16 * 1024 * 1024;
const STDERR_LINES_IN_MESSAGE = 5;

/** An external tool that could not be started, was killed, or exited with a non-zero status. */
export class ToolError extends Error {
  readonly command: string;
  readonly args: readonly string[];
  /** The exit status, or null when the tool did not exit on its own (not found, killed, timed out). */
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly timedOut: boolean;
  readonly stdout: string;
  readonly stderr: string;

  constructor(fields: {
    command: string;
    args: readonly string[];
    exitCode: number | null;
    signal: string | null;
    timedOut: boolean;
    stdout: string;
    stderr: string;
    reason?: string;
  }) {
    const outcome = fields.timedOut
      ? `timed out (killed by ${fields.signal ?? 'signal'})`
      : fields.exitCode !== null
        ? `failed with exit code ${fields.exitCode}`
        : fields.signal !== null
          ? `was killed by ${fields.signal}`
          : `could not run${fields.reason ? `: ${fields.reason}` : ''}`;
    const summary = summarise(fields.stderr);
    super(`${commandLine(fields.command, fields.args)} ${outcome}${summary ? `: ${summary}` : ''}`);
    this.name = 'ToolError';
    this.command = fields.command;
    this.args = fields.args;
    this.exitCode = fields.exitCode;
    this.signal = fields.signal;
    this.timedOut = fields.timedOut;
    this.stdout = fields.stdout;
    this.stderr = fields.stderr;
  }
}

export function isToolExit(error: unknown, exitCode: number): error is ToolError {
  return error instanceof ToolError && error.exitCode === exitCode;
}

/**
 * Runs an external tool directly (never through a shell) and returns its output.
 * LC_ALL=C keeps messages in English, because some callers recognise outcomes from stderr
 * (e.g. umount's "not mounted").
 */
export function runTool(
  command: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<ToolOutput> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      command,
      args,
      {
        encoding: 'utf8',
        timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
        killSignal: 'SIGKILL',
        maxBuffer: MAX_OUTPUT_BYTES,
        env: { ...process.env, LC_ALL: 'C' },
      },
      (error, stdout, stderr) => {
        if (!error) {
          resolve({ stdout, stderr });
          return;
        }
        // execFile reports a non-zero exit as a numeric code and a spawn failure as a string (ENOENT...).
        const code = (error as NodeJS.ErrnoException & { code?: unknown }).code;
        const failure = error as Error & { killed?: boolean; signal?: NodeJS.Signals | null };
        const exitCode = typeof code === 'number' ? code : null;
        const signal = failure.signal ?? null;
        reject(
          new ToolError({
            command,
            args,
            exitCode,
            signal,
            timedOut: failure.killed === true && exitCode === null && signal !== null,
            stdout,
            stderr,
            reason: typeof code === 'string' ? code : error.message,
          }),
        );
      },
    );
    // A tool that exits before reading its input makes the write fail with EPIPE; the exit
    // status reported through the callback is what matters, so the stream error is ignored.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(options.input);
  });
}

function commandLine(command: string, args: readonly string[]): string {
  return [command, ...args].map(quoteForDisplay).join(' ');
}

function quoteForDisplay(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * The last lines of stderr, where most tools put the reason, plus the first line when lines were
 * left out: some tools (mkfs.xfs) state the reason first and then print their whole usage text.
 */
function summarise(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');
  if (lines.length <= STDERR_LINES_IN_MESSAGE) return lines.join(' | ');
  return [lines[0], '…', ...lines.slice(-(STDERR_LINES_IN_MESSAGE - 2))].join(' | ');
}
