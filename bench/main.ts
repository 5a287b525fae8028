import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { BenchConfig, readConfig } from './config';
import { benchInfo, checkEnvironment, prefill } from './environment';
import { MiB } from './fio';
import { Layout } from './layout';
import { log } from './log';
import { memoryCase } from './memory-case';
import { daemonLayout, largeIoDaemonLayout, uncountedDaemonLayout } from './daemon-layout';
import { oursLayout } from './ours-layout';
import { qemuLayout } from './qemu-layout';
import { rbdCase } from './rbd-case';
import { stageCase } from './stage-case';
import { fioRbdLayout, krbdLayout, rbdNbdLayout } from './rbd-layouts';
import {
  BenchResults,
  overBaseline,
  renderKills,
  renderMemoryByCount,
  renderStages,
  renderTable,
  subjectOver,
  summarise,
  writeResults,
} from './report';
import { ThroughputRuns, throughputCase } from './throughput';

/*
 * Block-device benchmark: our VDUSE device server beside qemu-storage-daemon's vduse-blk export, in
 * one run where VDUSE exists (scripts/bench.sh runs it in the VM of test/vm/run.sh). Both serve the
 * same tmpfs image prefilled with data; fio (libaio, O_DIRECT, time based) runs on each /dev/vdX.
 * Writes results.json, results.md and raw/ (fio reports, server logs) into $VDUSE_CSI_OUT.
 */

const LAYOUTS = [qemuLayout, oursLayout, daemonLayout, uncountedDaemonLayout, largeIoDaemonLayout];
const BASELINE = qemuLayout.name;
/** The RBD case's clients: ours (the production daemon layout) first, divided by each of the others. */
const RBD_LAYOUTS = [daemonLayout, qemuLayout, rbdNbdLayout, krbdLayout, fioRbdLayout];
const RBD_SUBJECT = daemonLayout.name;

const names = (layouts: Layout[]): string[] => layouts.map(({ name }) => name);
const described = (layouts: Layout[]): Array<{ name: string; description: string }> =>
  layouts.map(({ name, description }) => ({ name, description }));

/** The file case: every layout serves the same tmpfs image, prefilled with random data. */
async function fileCase(
  config: BenchConfig,
  layouts: Layout[],
  rawDir: string,
  failures: string[],
): Promise<ThroughputRuns> {
  const image = join(config.scratchDir, 'bench.img');
  const started = performance.now();
  prefill(image, config.imageMiB);
  log(
    `prefilled ${image} (${config.imageMiB} MiB) in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
  try {
    return await throughputCase(
      config,
      {
        layouts,
        volume: (layout, queues) => ({
          name: `${layout.name}${queues}`,
          backend: { kind: 'file', path: image },
        }),
        volumeBytes: config.imageMiB * MiB,
      },
      rawDir,
      failures,
    );
  } finally {
    rmSync(image);
  }
}

async function main(): Promise<number> {
  const config = readConfig(process.env, names(LAYOUTS), names(RBD_LAYOUTS));
  checkEnvironment(config.rbd.layouts.length > 0);
  const layouts = config.fileCase ? LAYOUTS.filter(({ name }) => config.layouts.includes(name)) : [];
  const rbdLayouts = RBD_LAYOUTS.filter(({ name }) => config.rbd.layouts.includes(name));
  const rawDir = join(config.outDir, 'raw');
  mkdirSync(rawDir, { recursive: true });
  const info = benchInfo(config);
  log(`config: ${JSON.stringify(info)}`);

  const failures: string[] = [];
  const raw = layouts.length > 0 ? await fileCase(config, layouts, rawDir, failures) : {};
  const results: BenchResults = {
    info,
    baseline: BASELINE,
    layouts: described(layouts),
    ratios: overBaseline(BASELINE, names(layouts)),
    failures,
    summary: summarise(raw),
    memory: {},
    raw,
  };
  const method =
    `fio libaio direct=1, ${config.runtimeS} s + ${config.rampS} s ramp after a ${config.warmUpS} s warm-up per layout, numjobs = queues (iodepth per job, ` +
    `each job on its own slice), all layouts up at once on the same image, medians of ${config.repeats} ` +
    'alternating repeats. CPU us/IO = server utime+stime over the fio run / requests completed by /dev/vdX. ' +
    'RSS = server VmRSS after the job; HWM = VmHWM of the server instance so far (jobs run in table order). ' +
    `Memory: ${config.memory.deviceCounts.join(' and ')} volumes of ${config.memory.imageMiB} MiB per layout after a little I/O on ` +
    "each; Pss from smaps_rollup. RBD: the same jobs on each client's own image in one pool; no CPU or RSS " +
    'where no user-space process serves (krbd, fio-rbd); the kills run verified fio writes ' +
    `(${config.rbd.killMiB} MiB) after the jobs. Software-emulated VM: compare ratios, not absolute figures.`;
  writeResults(config.outDir, results, method); // the table survives a memory case that never ends
  if (config.memory.enabled) {
    results.memory = await memoryCase(config, layouts, rawDir);
    writeResults(config.outDir, results, method);
  }
  if (config.stage.enabled) {
    results.stage = await stageCase(config.scratchDir, config.stage.volumes);
    writeResults(config.outDir, results, method);
  }
  if (rbdLayouts.length > 0) {
    const rbd = await rbdCase(config, rbdLayouts, rawDir, failures);
    results.rbd = {
      ...rbd,
      layouts: described(rbdLayouts),
      ratios: subjectOver(RBD_SUBJECT, names(rbdLayouts)),
      summary: summarise(rbd.raw),
    };
    writeResults(config.outDir, results, method);
  }

  console.log(
    `\n${renderTable(results, false)}\n\n${renderMemoryByCount(results, false)}\n\n${renderStages(results.stage, false)}\n`,
  );
  if (results.rbd)
    console.log(`RBD\n${renderTable(results.rbd, false)}\n\n${renderKills(results.rbd.kills, false)}\n`);
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
