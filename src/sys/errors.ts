import { constants } from 'node:os';

const errnoNames = new Map<number, string>(
  Object.entries(constants.errno).map(([name, value]) => [value, name] as [number, string]),
);

/** A failed system call, carrying the errno and its symbolic name (e.g. EEXIST). */
export class SysError extends Error {
  readonly errno: number;
  readonly code: string;

  constructor(operation: string, errno: number) {
    const code = errnoNames.get(errno) ?? `errno ${errno}`;
    super(`${operation}: ${code}`);
    this.name = 'SysError';
    this.errno = errno;
    this.code = code;
  }
}

export function isErrno(error: unknown, code: string): boolean {
  return error instanceof SysError && error.code === code;
}
