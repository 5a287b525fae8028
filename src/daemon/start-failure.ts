import { CephError } from '../backend/ceph-error';
import { SysError } from '../sys/errors';

/**
 * What kind of problem stopped a device server from starting, for whoever has to act on it:
 * - environment: the kernel or the process lacks something (a module, a netlink family, a privilege);
 * - in-use: the device name belongs to another device or another server;
 * - image: the image file is missing or unusable;
 * - internal: anything else (a bug, or a failure this code does not know how to name).
 */
export type StartFailureKind = 'environment' | 'in-use' | 'image' | 'internal';

/** A device server's start failed at `step` because of `cause`; whatever it had made is undone. */
export class StartFailure extends Error {
  /** What undoing the earlier steps could not do (each logged when it happened). */
  readonly cleanupFailures: string[] = [];

  constructor(
    readonly device: string,
    readonly step: string,
    readonly kind: StartFailureKind,
    override readonly cause: unknown,
  ) {
    super(`${step}: ${messageOf(cause)}`);
    this.name = 'StartFailure';
  }

  /** Notes a cleanup that failed beside the failure, never instead of it. */
  noteCleanupFailure(what: string, error: unknown): void {
    this.cleanupFailures.push(`${what}: ${messageOf(error)}`);
    this.message = `${this.step}: ${messageOf(this.cause)} (cleanup also failed: ${this.cleanupFailures.join('; ')})`;
  }
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The kind a system error's errno tells by itself (a privilege, a device someone holds), if any. */
export function kindOfErrno(error: unknown): StartFailureKind | undefined {
  if (error instanceof CephError && error.kind === 'busy') return 'in-use';
  if (!(error instanceof SysError)) return undefined;
  if (error.code === 'EPERM' || error.code === 'EACCES') return 'environment';
  if (error.code === 'EBUSY') return 'in-use';
  return undefined;
}

/**
 * The line a server that failed to start prints on stdout, whatever the log level: whoever started
 * it (a script, a supervisor) reads the cause and its kind without parsing the log.
 */
export interface StartFailureLine {
  startFailed: string;
  pid: number;
  kind: StartFailureKind;
  step: string;
  error: string;
}

export function startFailureLine(failure: StartFailure, pid: number): string {
  const line: StartFailureLine = {
    startFailed: failure.device,
    pid,
    kind: failure.kind,
    step: failure.step,
    error: failure.message,
  };
  return JSON.stringify(line);
}
