import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KillFigures } from './kill-case';
import { MemoryByCount, MemoryFigures } from './memory-case';
import { RbdResults } from './rbd-case';
import { StageComparison, StageFigures } from './stage-case';
import { RunFigures, ThroughputRuns } from './throughput';

type MetricKey = 'iops' | 'mibS' | 'p50Us' | 'p99Us' | 'cpuUsPerIo' | 'rssMiB' | 'hwmMiB';

const METRICS: Array<{ key: MetricKey; header: string; digits: number }> = [
  { key: 'iops', header: 'IOPS', digits: 0 },
  { key: 'mibS', header: 'MiB/s', digits: 1 },
  { key: 'p50Us', header: 'p50 us', digits: 0 },
  { key: 'p99Us', header: 'p99 us', digits: 0 },
  { key: 'cpuUsPerIo', header: 'CPU us/IO', digits: 1 },
  { key: 'rssMiB', header: 'RSS MiB', digits: 1 },
  { key: 'hwmMiB', header: 'HWM MiB', digits: 1 },
];

/** Medians of the repeats: "queues/job" -> layout -> metric. */
export type Summary = Record<string, Record<string, Record<MetricKey, number | null> & { runs: number }>>;

/** One table of the throughput case: its layouts' medians and the ratio rows under them. */
export interface ThroughputTable {
  layouts: Array<{ name: string; description: string }>;
  /** Ratio rows: [numerator, denominator] layout names. */
  ratios: Array<[string, string]>;
  summary: Summary;
}

export interface BenchResults extends ThroughputTable {
  info: Record<string, unknown>;
  /** The layout the others are divided by. */
  baseline: string;
  failures: string[];
  memory: MemoryByCount;
  raw: ThroughputRuns;
  /** The RBD case, when it ran: its own table (ours over each other client) and kill figures. */
  rbd?: ThroughputTable & RbdResults;
  /** The stage case, when it ran: NodeStageVolume beside the qemu-storage-daemon flow. */
  stage?: StageFigures;
}

/** Every layout over the baseline. */
export function overBaseline(baseline: string, names: string[]): Array<[string, string]> {
  return names.filter((name) => name !== baseline).map((name) => [name, baseline]);
}

/** `subject` over every other layout. */
export function subjectOver(subject: string, names: string[]): Array<[string, string]> {
  return names.filter((name) => name !== subject).map((name) => [subject, name]);
}

export function median(values: Array<number | null>): number | null {
  const sorted = values.filter((value): value is number => value !== null).sort((a, b) => a - b);
  if (sorted.length === 0) return null;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

export function summarise(runs: ThroughputRuns): Summary {
  const summary: Summary = {};
  for (const [key, perLayout] of Object.entries(runs)) {
    summary[key] = {};
    for (const [layout, repeats] of Object.entries(perLayout)) {
      const medians = Object.fromEntries(
        METRICS.map(({ key: metric }) => [metric, median(repeats.map((run: RunFigures) => run[metric]))]),
      ) as Record<MetricKey, number | null>;
      summary[key][layout] = { ...medians, runs: repeats.length };
    }
  }
  return summary;
}

function format(value: number | null | undefined, digits: number): string {
  return value === null || value === undefined ? '-' : value.toFixed(digits);
}

function ratio(value: number | null | undefined, base: number | null | undefined): string {
  return value === null || value === undefined || !base ? '-' : (value / base).toFixed(2);
}

function renderRows(headers: string[], rows: string[][], markdown: boolean): string {
  if (markdown) {
    return [headers, headers.map(() => '---'), ...rows].map((row) => `| ${row.join(' | ')} |`).join('\n');
  }
  const widths = headers.map((header, column) =>
    Math.max(header.length, ...rows.map((row) => row[column]!.length)),
  );
  const line = (row: string[]): string =>
    row
      .map((cell, column) => (column >= 3 ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!)))
      .join('  ');
  return [line(headers), line(widths.map((width) => '-'.repeat(width))), ...rows.map(line)].join('\n');
}

/** One row per queue count, job and layout, then the table's ratio rows. */
export function renderTable(table: ThroughputTable, markdown: boolean): string {
  const headers = ['queues', 'job', 'daemon', ...METRICS.map(({ header }) => header)];
  const rows: string[][] = [];
  for (const [key, perLayout] of Object.entries(table.summary)) {
    const [queues, job] = key.split('/') as [string, string];
    for (const { name } of table.layouts) {
      const figures = perLayout[name];
      if (figures)
        rows.push([queues, job, name, ...METRICS.map(({ key: m, digits }) => format(figures[m], digits))]);
    }
    for (const [over, under] of table.ratios) {
      const [numerator, denominator] = [perLayout[over], perLayout[under]];
      if (!numerator || !denominator) continue;
      rows.push([
        queues,
        job,
        `${over}/${under}`,
        ...METRICS.map(({ key: m }) => ratio(numerator[m], denominator[m])),
      ]);
    }
  }
  return renderRows(headers, rows, markdown);
}

/** What fio got when each client's serving process was SIGKILLed under verified writes. */
export function renderKills(kills: KillFigures[], markdown: boolean): string {
  const headers = ['client', 'fio', 'exit', 'errors', 'longest stall ms', 'fio end s after kill', 'fio said'];
  const rows = kills.map((kill) => [
    kill.layout,
    kill.outcome,
    format(kill.fioExit, 0),
    format(kill.errors, 0),
    format(kill.longestStallMs, 0),
    format(kill.fioEndS, 1),
    kill.fioMessages.join(' / ').slice(0, 160) || '-',
  ]);
  const kernel = kills.flatMap((kill) =>
    kill.kernelMessages.map((line) => `${kill.layout}: kernel: ${line}`),
  );
  return [renderRows(headers, rows, markdown), ...kernel.map((line) => (markdown ? `- ${line}` : line))].join(
    '\n',
  );
}

/** Totals over every serving process, per device, and each layout's ratio to the baseline. */
export function renderMemory(
  memory: Record<string, MemoryFigures>,
  baseline: string,
  markdown: boolean,
): string {
  const lines: string[] = [];
  const base = memory[baseline];
  for (const [layout, figures] of Object.entries(memory)) {
    if ('skipped' in figures) {
      lines.push(`${layout}: skipped: ${figures.skipped}`);
      continue;
    }
    lines.push(
      `${layout}: ${figures.processes} process(es), ${figures.devices} devices: total VmRSS ` +
        `${format(figures.rssMiB, 1)} MiB, total Pss ${format(figures.pssMiB, 1)} MiB, total VmHWM ` +
        `${format(figures.hwmMiB, 1)} MiB, total RssAnon ${format(figures.rssAnonMiB, 1)} MiB` +
        (figures.pssBeforeIoMiB === undefined
          ? ''
          : ` (Pss before I/O ${format(figures.pssBeforeIoMiB, 1)} MiB)`) +
        '; per device ' +
        `VmRSS ${format(figures.rssMiB / figures.devices, 1)} MiB, Pss ${format(figures.pssMiB / figures.devices, 1)} MiB`,
    );
    if (base && !('skipped' in base) && layout !== baseline) {
      lines.push(
        `${layout} / ${baseline}: RSS ${ratio(figures.rssMiB, base.rssMiB)}, ` +
          `Pss ${ratio(figures.pssMiB, base.pssMiB)}`,
      );
    }
  }
  return lines.map((line) => (markdown ? `- ${line}` : line)).join('\n');
}

/**
 * The memory case per count of volumes, then what each layout costs fixed and per further volume:
 * the straight line through its Pss at the fewest and the most volumes.
 */
export function renderMemoryByCount(
  results: Pick<BenchResults, 'memory' | 'baseline'>,
  markdown: boolean,
): string {
  const counts = Object.keys(results.memory).sort((a, b) => Number(a) - Number(b));
  if (counts.length === 0) return '(not measured)';
  const sections = counts.map(
    (count) => `${count} volumes:\n${renderMemory(results.memory[count]!, results.baseline, markdown)}`,
  );
  if (counts.length < 2) return sections.join('\n\n');
  const fewest = results.memory[counts[0]!]!;
  const most = results.memory[counts[counts.length - 1]!]!;
  const lines: string[] = [];
  for (const [layout, low] of Object.entries(fewest)) {
    const high = most[layout];
    if ('skipped' in low || !high || 'skipped' in high) continue;
    const perVolume = (high.pssMiB - low.pssMiB) / (high.devices - low.devices);
    lines.push(
      `${layout}: Pss ${format(low.pssMiB - perVolume * low.devices, 1)} MiB fixed + ` +
        `${format(perVolume, 2)} MiB per further volume (from ${low.devices} and ${high.devices})`,
    );
  }
  const fit = lines.map((line) => (markdown ? `- ${line}` : line)).join('\n');
  return [...sections, ...(lines.length > 0 ? [`fixed and per-volume cost:\n${fit}`] : [])].join('\n\n');
}

/** The stage case's lines: our median and p95 and the reference flow's, for each order. */
export function renderStages(figures: StageFigures | undefined, markdown: boolean): string {
  if (!figures) return '(not measured)';
  const line = (
    label: string,
    { nodeStageMs, qemuStorageDaemonVdpaMkfsMountMs: qemu, ratioMedian, ratioP95 }: StageComparison,
  ): string =>
    `${figures.volumes} ${label}: NodeStageVolume median ${nodeStageMs.median} ms, p95 ${nodeStageMs.p95} ms; ` +
    `qemu-storage-daemon + vdpa dev add + mkfs + mount median ${qemu.median} ms, p95 ${qemu.p95} ms; ` +
    `ratio median ${ratioMedian.toFixed(2)}x, p95 ${ratioP95.toFixed(2)}x`;
  return [line('at once', figures.atOnce), line('one after another', figures.oneAfterAnother)]
    .map((text) => (markdown ? `- ${text}` : text))
    .join('\n');
}

/** results.json and results.md in `outDir`. */
export function writeResults(outDir: string, results: BenchResults, method: string): void {
  writeFileSync(join(outDir, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  const info = results.info;
  const markdown = [
    `# vduse-csi block benchmark (${String(info.date)})`,
    '',
    method,
    '',
    `kernel ${String(info.kernel)}, ${String(info.qemuStorageDaemon)}, ${String(info.fio)}, node ${String(info.node)}, ${String(info.cpus)} vCPUs`,
    '',
    ...results.layouts.map(({ name, description }) => `- ${name}: ${description}`),
    ...results.failures.map((failure) => `- ${failure}`),
    '',
    renderTable(results, true),
    '',
    '## Memory',
    '',
    renderMemoryByCount(results, true),
    '',
    '## NodeStageVolume',
    '',
    renderStages(results.stage, true),
    '',
    ...(results.rbd ? rbdMarkdown(results.rbd, results.baseline) : []),
  ];
  writeFileSync(join(outDir, 'results.md'), markdown.join('\n'));
}

/** `baseline` (the file case's, qemu-storage-daemon) is what the memory lines compare with. */
function rbdMarkdown(rbd: ThroughputTable & RbdResults, baseline: string): string[] {
  return [
    '## RBD',
    '',
    `Ceph (one monitor, one memstore OSD) started in ${rbd.cephStartS.toFixed(1)} s; ${rbd.layouts.length} ` +
      `images of ${rbd.imageMiB} MiB in one pool imported from random data in ${rbd.prefillS.toFixed(1)} s.`,
    '',
    ...rbd.layouts.map(({ name, description }) => `- ${name}: ${description}`),
    '',
    renderTable(rbd, true),
    '',
    '### SIGKILL of the serving process under verified writes',
    '',
    rbd.kills.length > 0 ? renderKills(rbd.kills, true) : '(not measured)',
    '',
    '### Memory serving one image, after the jobs',
    '',
    Object.keys(rbd.memory).length > 0 ? renderMemory(rbd.memory, baseline, true) : '(not measured)',
    '',
  ];
}
