import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { FioRun, TAKEOVER_TIMEOUT_MS, sh, waitFor } from './support';

/** The exclusive lock's owners as `rbd lock ls` prints them (their addresses). */
export function lockAddresses(conf: string, spec: string): string[] {
  const locks = JSON.parse(sh(`rbd -c ${conf} lock ls --format json ${spec}`)) as Array<{ address: string }>;
  return locks.map((lock) => lock.address);
}

/** The cluster's blocklist as `ceph osd blocklist ls` prints it. */
export function blocklisted(conf: string): string {
  return sh(`ceph -c ${conf} osd blocklist ls 2>&1`);
}

/** Writes of the device so far (field 5 of /sys/block/vdX/stat). */
function writesDone(device: string): number {
  const fields = readFileSync(`/sys/block/${device.replace('/dev/', '')}/stat`, 'utf8')
    .trim()
    .split(/\s+/);
  return Number(fields[4]);
}

/** Waits for fio, asserts it saw no error, and answers its longest completion latency in ms. */
export async function expectCleanFio(fio: FioRun): Promise<number> {
  const { code, output } = await fio.done;
  assert.equal(code, 0, `fio reported errors:\n${output}`);
  const job = (JSON.parse(output.slice(output.indexOf('{'))) as { jobs: FioJob[] }).jobs[0]!;
  assert.equal(job.error, 0);
  return Math.max(job.write.clat_ns.max, job.read.clat_ns.max) / 1e6;
}

interface FioJob {
  error: number;
  read: { clat_ns: { max: number } };
  write: { clat_ns: { max: number } };
}

/** Waits until the device has served more writes than it had: fio is under way. */
export async function whileWriting(device: string): Promise<void> {
  const before = writesDone(device);
  await waitFor('fio writing', () => writesDone(device) > before + 64, TAKEOVER_TIMEOUT_MS);
}
