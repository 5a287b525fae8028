import koffi from 'koffi';
import { SysError } from './errors';

/*
 * Thin typed bindings to the libc calls the device runtime needs. Buffers passed to `void *`
 * parameters are handed to the kernel without a copy; `uintptr_t` parameters take raw process
 * addresses (inside our own mmaps), which keeps the data path free of per-request allocations.
 */
const libc = koffi.load('libc.so.6');
// ssize_t is spelled intptr_t: a koffi type name is the process's, and the CLI's bundle and the
// plugin's each load this module.

export const raw = {
  open: libc.func('int open(const char *path, int flags, uint32_t mode)'),
  close: libc.func('int close(int fd)'),
  read: libc.func('intptr_t read(int fd, _Out_ void *buf, size_t count)'),
  write: libc.func('intptr_t write(int fd, const void *buf, size_t count)'),
  ioctlPtr: libc.func('int ioctl(int fd, unsigned long request, void *arg)'),
  ioctlInt: libc.func('int ioctl(int fd, unsigned long request, uintptr_t arg)'),
  mmap: libc.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)'),
  munmap: libc.func('int munmap(void *addr, size_t length)'),
  eventfd: libc.func('int eventfd(unsigned int initval, int flags)'),
  poll: libc.func('int poll(void *fds, unsigned long nfds, int timeout)'),
  preadAddr: libc.func('intptr_t pread(int fd, uintptr_t buf, size_t count, int64_t offset)'),
  pwriteAddr: libc.func('intptr_t pwrite(int fd, uintptr_t buf, size_t count, int64_t offset)'),
  preadvAddr: libc.func('intptr_t preadv(int fd, uintptr_t iov, int iovcnt, int64_t offset)'),
  pwritevAddr: libc.func('intptr_t pwritev(int fd, uintptr_t iov, int iovcnt, int64_t offset)'),
  fdatasync: libc.func('int fdatasync(int fd)'),
  fallocate: libc.func('int fallocate(int fd, int mode, int64_t offset, int64_t len)'),
  ftruncate: libc.func('int ftruncate(int fd, int64_t length)'),
  flock: libc.func('int flock(int fd, int operation)'),
  pthreadSelf: libc.func('uintptr_t pthread_self()'),
  pthreadSetName: libc.func('int pthread_setname_np(uintptr_t thread, const char *name)'),
  socket: libc.func('int socket(int domain, int type, int protocol)'),
  bind: libc.func('int bind(int fd, const void *addr, uint32_t addrlen)'),
  send: libc.func('intptr_t send(int fd, const void *buf, size_t len, int flags)'),
  recv: libc.func('intptr_t recv(int fd, _Out_ void *buf, size_t len, int flags)'),
  setsockopt: libc.func('int setsockopt(int fd, int level, int name, const void *val, uint32_t len)'),
};

export const O_RDONLY = 0;
export const O_RDWR = 2;
export const O_CREAT = 0o100;
export const O_CLOEXEC = 0o2000000;
export const O_NONBLOCK = 0o4000;

export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 1;
export const MAP_PRIVATE = 2;
export const MAP_ANONYMOUS = 0x20;

export const EFD_CLOEXEC = 0o2000000;
export const EFD_NONBLOCK = 0o4000;

export const POLLIN = 0x1;
export const POLLERR = 0x8;

export const LOCK_EX = 2;
export const LOCK_NB = 4;

export const FALLOC_FL_KEEP_SIZE = 0x1;
export const FALLOC_FL_PUNCH_HOLE = 0x2;
export const FALLOC_FL_ZERO_RANGE = 0x10;

/** The kernel keeps 15 bytes of a thread's name (TASK_COMM_LEN less its NUL). */
const THREAD_NAME_BYTES = 15;

/**
 * Names the calling thread (ASCII, cut to 15 characters) as `top -H`, `ps -L` and
 * /proc/PID/task/TID/comm show it; every Node.js thread is otherwise called "node". The name is
 * only for people reading those tools, so a refusal is not an error.
 */
export function nameThisThread(name: string): void {
  raw.pthreadSetName(raw.pthreadSelf(), name.slice(0, THREAD_NAME_BYTES));
}

export function errno(): number {
  return koffi.errno();
}

/** Returns `result` when it is non-negative, otherwise throws a SysError naming `operation`. */
export function check(result: number, operation: string): number {
  if (result < 0) throw new SysError(operation, koffi.errno());
  return result;
}

export function openPath(path: string, flags: number, mode = 0o600): number {
  return check(raw.open(path, flags | O_CLOEXEC, mode), `open ${path}`);
}

export function closeFd(fd: number): void {
  check(raw.close(fd), 'close');
}

export function ioctl(fd: number, request: number, arg: Buffer | null, what: string): number {
  return check(raw.ioctlPtr(fd, request, arg), what);
}

export function ioctlValue(fd: number, request: number, value: number, what: string): number {
  return check(raw.ioctlInt(fd, request, value), what);
}

export interface Mapping {
  /** Process address of the first mapped byte. */
  readonly address: number;
  readonly length: number;
  /** The mapped bytes, without a copy. */
  readonly bytes: Uint8Array;
  unmap(): void;
}

export function mmapFd(fd: number, length: number, prot: number, offset: number): Mapping {
  return mapMemory(length, prot, MAP_SHARED, fd, offset);
}

/** Private zero-filled memory with a stable address (for tables handed to the kernel). */
export function mapAnonymous(length: number): Mapping {
  return mapMemory(length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

function mapMemory(length: number, prot: number, flags: number, fd: number, offset: number): Mapping {
  const pointer = raw.mmap(null, length, prot, flags, fd, offset);
  const address = Number(koffi.address(pointer));
  if (address === -1 || address >= 2 ** 53) throw new SysError('mmap', koffi.errno());
  const bytes = new Uint8Array(koffi.view(pointer, length));
  let mapped = true;
  return {
    address,
    length,
    bytes,
    unmap() {
      if (!mapped) return;
      mapped = false;
      check(raw.munmap(pointer, length), 'munmap');
    },
  };
}

export function createEventFd(flags = EFD_CLOEXEC | EFD_NONBLOCK): number {
  return check(raw.eventfd(0, flags), 'eventfd');
}

const eventBuffer = Buffer.alloc(8);

/** Consumes an eventfd's counter; returns false when it was zero (EAGAIN on a non-blocking fd). */
export function drainEventFd(fd: number): boolean {
  return raw.read(fd, eventBuffer, 8) === 8;
}

export function signalEventFd(fd: number): void {
  eventBuffer.writeBigUInt64LE(1n);
  check(raw.write(fd, eventBuffer, 8), 'eventfd write');
}

/** poll(2) over a reusable set of descriptors. */
export class PollSet {
  private readonly table: Buffer;

  constructor(
    readonly fds: readonly number[],
    events = POLLIN,
  ) {
    this.table = Buffer.alloc(8 * fds.length);
    fds.forEach((fd, index) => {
      this.table.writeInt32LE(fd, index * 8);
      this.table.writeInt16LE(events, index * 8 + 4);
    });
  }

  /** Waits up to `timeoutMs`; returns the revents of each descriptor (0 = nothing). */
  wait(timeoutMs: number): number[] {
    this.clearEvents();
    return this.events(raw.poll(this.table, this.fds.length, timeoutMs), koffi.errno());
  }

  /** The same wait on a helper thread, so this thread's event loop runs meanwhile. */
  waitAsync(timeoutMs: number): Promise<number[]> {
    this.clearEvents();
    return new Promise((resolve, reject) => {
      raw.poll.async(this.table, this.fds.length, timeoutMs, (error: unknown, ready: number) => {
        if (error) reject(error instanceof Error ? error : new Error(String(error)));
        // errno stays on the helper thread; a failed wait reads as "nothing ready" and is retried.
        else resolve(this.events(Math.max(ready, 0), 0));
      });
    });
  }

  private clearEvents(): void {
    for (let i = 0; i < this.fds.length; i++) this.table.writeInt16LE(0, i * 8 + 6);
  }

  private events(ready: number, code: number): number[] {
    if (ready < 0) {
      if (code === 4 /* EINTR */) return this.fds.map(() => 0);
      throw new SysError('poll', code);
    }
    return this.fds.map((_, i) => this.table.readInt16LE(i * 8 + 6));
  }
}
