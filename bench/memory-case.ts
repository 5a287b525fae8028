import { truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../test/kernel/support';
import { bindProcessesOf } from '../test/support/daemon-processes';
import { eventually } from '../test/support/eventually';
import { BenchConfig } from './config';
import { MiB } from './fio';
import { devicePath, Layout, ServedVolumes, Volume } from './layout';
import { log } from './log';
import { memoryOf } from './proc';

export interface MeasuredMemory {
  processes: number;
  devices: number;
  rssMiB: number;
  pssMiB: number;
  hwmMiB: number;
  rssAnonMiB: number;
  /** Total Pss once every volume was served, before any I/O (the memory case only). */
  pssBeforeIoMiB?: number;
}

export type MemoryFigures = MeasuredMemory | { skipped: string };

/** Some real I/O on every device, so each data path has been exercised before memory is read. */
function touch(devices: string[]): void {
  for (const device of devices) {
    run('dd', [`if=${device}`, 'of=/dev/null', 'bs=64k', 'count=64', 'iflag=direct']);
    run('dd', ['if=/dev/zero', `of=${device}`, 'bs=64k', 'count=16', 'oflag=direct', 'conv=notrunc']);
  }
}

/** How long the daemon's bind process may take to end after the last add (it ends 10 s after it). */
const BIND_END_TIMEOUT_MS = 60_000;

/**
 * Memory is read with the volumes idle, so once the bind processes the adds started are gone (the
 * daemon's ends when binds stop: src/daemon/node-daemon.ts BIND_PROCESS_IDLE_MS).
 */
async function bindProcessesEnded(served: ServedVolumes): Promise<void> {
  await eventually(async () => {
    const binding = served.pids().flatMap(bindProcessesOf);
    if (binding.length > 0) throw new Error(`bind processes ${binding.join(', ')} still run`);
  }, BIND_END_TIMEOUT_MS);
}

async function measure(served: ServedVolumes): Promise<MemoryFigures> {
  await bindProcessesEnded(served);
  const pssBeforeIoMiB = memoryFigures(served).pssMiB;
  touch([...served.targets.values()].map(devicePath));
  await new Promise((resolve) => setTimeout(resolve, 1000));
  return { ...memoryFigures(served), pssBeforeIoMiB };
}

/** Memory of every process serving `served`, totalled, as it is now. */
export function memoryFigures(served: ServedVolumes): MeasuredMemory {
  const memory = memoryOf(served.pids());
  return {
    processes: served.processes,
    devices: served.targets.size,
    rssMiB: memory.VmRSS / 1024,
    pssMiB: memory.Pss / 1024,
    hwmMiB: memory.VmHWM / 1024,
    rssAnonMiB: memory.RssAnon / 1024,
  };
}

/** Per count of volumes (as a string: a JSON key), per layout name. */
export type MemoryByCount = Record<string, Record<string, MemoryFigures>>;

/**
 * Memory of each layout serving each of `config.memory.deviceCounts` small sparse volumes, one
 * layout and one count at a time.
 */
export async function memoryCase(
  config: BenchConfig,
  layouts: Layout[],
  rawDir: string,
): Promise<MemoryByCount> {
  const { deviceCounts, imageMiB } = config.memory;
  const images = Array.from({ length: Math.max(...deviceCounts) }, (_, index) =>
    join(config.scratchDir, `mem${index}.img`),
  );
  for (const image of images) {
    writeFileSync(image, '');
    truncateSync(image, imageMiB * MiB);
  }
  const byCount: MemoryByCount = {};
  for (const count of deviceCounts) {
    const figures: Record<string, MemoryFigures> = (byCount[String(count)] = {});
    for (const layout of layouts) {
      figures[layout.name] = await served(layout, images.slice(0, count), config, rawDir);
      log(`memory ${layout.name}, ${count} volumes: ${JSON.stringify(figures[layout.name])}`);
    }
  }
  for (const image of images) unlinkSync(image);
  return byCount;
}

async function served(
  layout: Layout,
  images: string[],
  config: BenchConfig,
  rawDir: string,
): Promise<MemoryFigures> {
  const volumes: Volume[] = images.map((path, index) => ({
    name: `${layout.name}-mem${index}`,
    backend: { kind: 'file', path },
  }));
  let serving: ServedVolumes | undefined;
  try {
    serving = await layout.serve(volumes, {
      queues: 1,
      logDir: rawDir,
      readyTimeoutMs: config.readyTimeoutMs,
    });
    return await measure(serving);
  } catch (error) {
    return { skipped: String(error) };
  } finally {
    await serving?.stop().catch((error: unknown) => log(`${layout.name}: stop failed: ${String(error)}`));
  }
}
