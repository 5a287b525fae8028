import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { readConfig } from './config';
import { benchInfo, checkEnvironment, prefill } from './environment';
import { log } from './log';
import { memoryCase } from './memory-case';
import { daemonLayout, largeIoDaemonLayout, uncountedDaemonLayout } from './daemon-layout';
import { oursLayout } from './ours-layout';
import { qemuLayout } from './qemu-layout';
import { BenchResults, renderMemory, renderTable, summarise, writeResults } from './report';
import { throughputCase } from './throughput';

/*
 * Block-device benchmark: our VDUSE device server beside qemu-storage-daemon's vduse-blk export, in
 * one run where VDUSE exists (scripts/bench.sh runs it in the VM of test/vm/run.sh). Both serve the
 * same tmpfs image prefilled with data; fio (libaio, O_DIRECT, time based) runs on each /dev/vdX.
 * Writes results.json, results.md and raw/ (fio reports, server logs) into $VDUSE_CSI_OUT.
 */

const LAYOUTS = [qemuLayout, oursLayout, daemonLayout, uncountedDaemonLayout, largeIoDaemonLayout];
const BASELINE = qemuLayout.name;

async function main(): Promise<number> {
  const config = readConfig(
    process.env,
    LAYOUTS.map(({ name }) => name),
  );
  checkEnvironment();
  const layouts = LAYOUTS.filter(({ name }) => config.layouts.includes(name));
  const rawDir = join(config.outDir, 'raw');
  mkdirSync(rawDir, { recursive: true });
  const info = benchInfo(config);
  log(`config: ${JSON.stringify(info)}`);

  const image = join(config.scratchDir, 'bench.img');
  const started = performance.now();
  prefill(image, config.imageMiB);
  log(
    `prefilled ${image} (${config.imageMiB} MiB) in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );

  const failures: string[] = [];
  const raw = await throughputCase(config, layouts, image, rawDir, failures);
  rmSync(image);
  const results: BenchResults = {
    info,
    baseline: BASELINE,
    layouts: layouts.map(({ name, description }) => ({ name, description })),
    failures,
    summary: summarise(raw),
    memory: {},
    raw,
  };
  const method =
    `fio libaio direct=1, ${config.runtimeS} s + ${config.rampS} s ramp, numjobs = queues (iodepth per job, ` +
    `each job on its own slice), all layouts up at once on the same image, medians of ${config.repeats} ` +
    'alternating repeats. CPU us/IO = server utime+stime over the fio run / requests completed by /dev/vdX. ' +
    'RSS = server VmRSS after the job; HWM = VmHWM of the server instance so far (jobs run in table order). ' +
    `Memory: ${config.memory.devices} volumes of ${config.memory.imageMiB} MiB per layout after a little I/O on ` +
    'each; Pss from smaps_rollup. Software-emulated VM: compare ratios, not absolute figures.';
  writeResults(config.outDir, results, method); // the table survives a memory case that never ends
  if (config.memory.enabled) {
    results.memory = await memoryCase(config, layouts, rawDir);
    writeResults(config.outDir, results, method);
  }

  console.log(`\n${renderTable(results, false)}\n\n${renderMemory(results, false)}\n`);
  for (const failure of failures) console.log(failure);
  log(`results: ${join(config.outDir, 'results.json')} and results.md`);
  return failures.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    process.exit(1);
  },
);
