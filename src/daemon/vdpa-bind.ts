import { VdpaClient } from '../vdpa';

/*
 * `node vdpa-bind.js NAME`: binds VDUSE device NAME to virtio-vdpa (vdpa DEV_NEW), in a process of
 * its own. The driver's probe reads the new disk (its partition table) inside this call, and the
 * device server's queue threads serve those reads. Were the server itself the caller, a SIGKILL
 * landing during such a read would leave its calling thread in uninterruptible sleep for good: the
 * threads that would serve the read are gone, and the process, which cannot finish exiting, keeps
 * the device's fd open, so no successor can take the device over. From here, the server's death
 * closes the fd, its successor serves the read, and this call returns.
 */
async function bind(name: string): Promise<void> {
  const vdpa = await VdpaClient.open();
  try {
    await vdpa.addDevice(name);
  } finally {
    await vdpa.close();
  }
}

bind(process.argv[2] ?? '').then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(error instanceof Error ? error.message : String(error));
    process.exit(1);
  },
);
