import { parentPort } from 'node:worker_threads';

/** winston's levels, most severe first: a record passes when its rank is at most the threshold's. */
const RANKS = { error: 0, warn: 1, info: 2, http: 3, verbose: 4, debug: 5, silly: 6 } as const;

export type LogLevel = keyof typeof RANKS;

/** A device thread's log record, on its way to the main thread's logger. */
export interface ThreadLogRecord {
  type: 'log';
  level: LogLevel;
  message: string;
  meta: Record<string, unknown>;
}

function isLevel(level: string): level is LogLevel {
  return Object.hasOwn(RANKS, level);
}

/**
 * The logger of a device thread. Records go to the main thread, which writes them with the
 * process's logger: a thread never loads winston, whose start-up and memory a server would
 * otherwise pay once per thread.
 */
class ThreadLog {
  private threshold: number = RANKS.info;

  setLevel(level: string): void {
    if (!isLevel(level)) throw new Error(`unknown log level ${level}`);
    this.threshold = RANKS[level];
  }

  error(message: string, meta: Record<string, unknown> = {}): void {
    this.send('error', message, meta);
  }

  warn(message: string, meta: Record<string, unknown> = {}): void {
    this.send('warn', message, meta);
  }

  info(message: string, meta: Record<string, unknown> = {}): void {
    this.send('info', message, meta);
  }

  debug(message: string, meta: Record<string, unknown> = {}): void {
    this.send('debug', message, meta);
  }

  private send(level: LogLevel, message: string, meta: Record<string, unknown>): void {
    if (RANKS[level] > this.threshold) return;
    const record: ThreadLogRecord = { type: 'log', level, message, meta };
    parentPort?.postMessage(record);
  }
}

export const threadLog = new ThreadLog();
