import { truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../test/kernel/support';
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
}

export type MemoryFigures = MeasuredMemory | { skipped: string };

/** Some real I/O on every device, so each data path has been exercised before memory is read. */
function touch(devices: string[]): void {
  for (const device of devices) {
    run('dd', [`if=${device}`, 'of=/dev/null', 'bs=64k', 'count=64', 'iflag=direct']);
    run('dd', ['if=/dev/zero', `of=${device}`, 'bs=64k', 'count=16', 'oflag=direct', 'conv=notrunc']);
  }
}

async function measure(served: ServedVolumes): Promise<MemoryFigures> {
  touch([...served.targets.values()].map(devicePath));
  await new Promise((resolve) => setTimeout(resolve, 1000));
  return memoryFigures(served);
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

/** Memory of each layout serving `config.memory.devices` small sparse volumes (per layout name). */
export async function memoryCase(
  config: BenchConfig,
  layouts: Layout[],
  rawDir: string,
): Promise<Record<string, MemoryFigures>> {
  const { devices, imageMiB } = config.memory;
  const images = Array.from({ length: devices }, (_, index) => join(config.scratchDir, `mem${index}.img`));
  for (const image of images) {
    writeFileSync(image, '');
    truncateSync(image, imageMiB * MiB);
  }
  const figures: Record<string, MemoryFigures> = {};
  for (const layout of layouts) {
    const volumes: Volume[] = images.map((path, index) => ({
      name: `${layout.name}-mem${index}`,
      backend: { kind: 'file', path },
    }));
    let served: ServedVolumes | undefined;
    try {
      served = await layout.serve(volumes, {
        queues: 1,
        logDir: rawDir,
        readyTimeoutMs: config.readyTimeoutMs,
      });
      figures[layout.name] = await measure(served);
    } catch (error) {
      figures[layout.name] = { skipped: String(error) };
    } finally {
      await served?.stop().catch((error: unknown) => log(`${layout.name}: stop failed: ${String(error)}`));
    }
    log(`memory ${layout.name}: ${JSON.stringify(figures[layout.name])}`);
  }
  for (const image of images) unlinkSync(image);
  return figures;
}
