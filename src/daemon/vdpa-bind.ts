import { createInterface } from 'node:readline';
import { VdpaClient } from '../vdpa';

/*
 * `node vdpa-bind.js`: binds VDUSE devices to virtio-vdpa (vdpa DEV_NEW), in a process of its own,
 * one device name per line on stdin, one JSON answer per line on stdout ({"ok":true} or
 * {"error":"..."}); it exits when stdin ends. The driver's probe reads the new disk (its partition
 * table) inside DEV_NEW, and the device server's queue threads serve those reads. Were the server
 * itself the caller, a SIGKILL landing during such a read would leave its calling thread in
 * uninterruptible sleep for good: the threads that would serve the read are gone, and the process,
 * which cannot finish exiting, keeps the device's fd open, so no successor can take the device
 * over. From here, the server's death closes the fd, its successor serves the read, this call
 * returns, and the end of stdin ends this process. The kernel runs one DEV_NEW at a time anyway,
 * so one process answering in turn loses nothing.
 */
async function bind(name: string): Promise<void> {
  const vdpa = await VdpaClient.open();
  try {
    await vdpa.addDevice(name);
  } finally {
    await vdpa.close();
  }
}

async function answerEachLine(): Promise<void> {
  // An answer to a server that died meanwhile has nowhere to go: that is not this process's failure.
  process.stdout.on('error', () => undefined);
  for await (const name of createInterface({ input: process.stdin })) {
    const answer = await bind(name).then(
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
