import { createInterface } from 'node:readline';
import { VdpaClient } from '../vdpa';

/*
 * `node vdpa-bind.js`: adds VDUSE devices to the vdpa bus and removes them (vdpa DEV_NEW, DEV_DEL),
 * in a process of its own, one request per line on stdin (`add NAME` or `del NAME`), one JSON
 * answer per line on stdout ({"ok":true} or {"error":"..."}); it exits when stdin ends.
 *
 * Both calls run inside the kernel until the device server has served them: the driver's probe
 * reads the new disk (its partition table) inside DEV_NEW, and DEV_DEL resets the device, which the
 * server's threads must acknowledge. Were the server itself the caller:
 * - a SIGKILL landing meanwhile would leave its calling thread in uninterruptible sleep for good:
 *   the threads that would answer are gone, and the process, which cannot finish exiting, keeps the
 *   device's fd open, so no successor can take the device over. From here, the server's death
 *   closes the fd, its successor answers, this call returns, and the end of stdin ends this process;
 * - each call would hold one of the server's libuv threadpool threads (koffi runs blocking calls
 *   there), and a handful of removes at once would take them all, starving whatever else of the
 *   server waits on that pool.
 * The kernel runs these calls one at a time anyway, so one process answering in turn loses nothing.
 */
const OPERATIONS: Record<string, (vdpa: VdpaClient, name: string) => Promise<void>> = {
  add: (vdpa, name) => vdpa.addDevice(name),
  del: (vdpa, name) => vdpa.removeDevice(name),
};

async function perform(line: string): Promise<void> {
  const [operation, name, ...rest] = line.split(' ');
  const call = OPERATIONS[operation ?? ''];
  if (!call || !name || rest.length > 0)
    throw new Error(`vdpa-bind cannot read the request ${JSON.stringify(line)}`);
  const vdpa = await VdpaClient.open();
  try {
    await call(vdpa, name);
  } finally {
    await vdpa.close();
  }
}

async function answerEachLine(): Promise<void> {
  // An answer to a server that died meanwhile has nowhere to go: that is not this process's failure.
  process.stdout.on('error', () => undefined);
  for await (const line of createInterface({ input: process.stdin })) {
    const answer = await perform(line).then(
      () => ({ ok: true }),
      (error: unknown) => ({ error: error instanceof Error ? error.message : String(error) }),
    );
    process.stdout.write(`${JSON.stringify(answer)}\n`);
  }
}

answerEachLine().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(error instanceof Error ? error.message : String(error));
    process.exit(1);
  },
);
