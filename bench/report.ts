import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MemoryFigures } from './memory-case';
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

export interface BenchResults {
  info: Record<string, unknown>;
  /** The layout the others are divided by. */
  baseline: string;
  layouts: Array<{ name: string; description: string }>;
  failures: string[];
  summary: Summary;
  memory: Record<string, MemoryFigures>;
  raw: ThroughputRuns;
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

/** One row per queue count, job and layout, then each layout's ratio to the baseline. */
export function renderTable(results: BenchResults, markdown: boolean): string {
  const headers = ['queues', 'job', 'daemon', ...METRICS.map(({ header }) => header)];
  const rows: string[][] = [];
  for (const [key, perLayout] of Object.entries(results.summary)) {
    const [queues, job] = key.split('/') as [string, string];
    for (const { name } of results.layouts) {
      const figures = perLayout[name];
      if (figures)
        rows.push([queues, job, name, ...METRICS.map(({ key: m, digits }) => format(figures[m], digits))]);
    }
    const base = perLayout[results.baseline];
    for (const { name } of results.layouts) {
      const figures = perLayout[name];
      if (!base || !figures || name === results.baseline) continue;
      rows.push([
        queues,
        job,
        `${name}/${results.baseline}`,
        ...METRICS.map(({ key: m }) => ratio(figures[m], base[m])),
      ]);
    }
  }
  return renderRows(headers, rows, markdown);
}

/** Totals over every serving process, per device, and each layout's ratio to the baseline. */
export function renderMemory(results: BenchResults, markdown: boolean): string {
  const lines: string[] = [];
  const base = results.memory[results.baseline];
  for (const [layout, figures] of Object.entries(results.memory)) {
    if ('skipped' in figures) {
      lines.push(`${layout}: skipped: ${figures.skipped}`);
      continue;
    }
    lines.push(
      `${layout}: ${figures.processes} process(es), ${figures.devices} devices: total VmRSS ` +
        `${format(figures.rssMiB, 1)} MiB, total Pss ${format(figures.pssMiB, 1)} MiB, total VmHWM ` +
        `${format(figures.hwmMiB, 1)} MiB, total RssAnon ${format(figures.rssAnonMiB, 1)} MiB; per device ` +
        `VmRSS ${format(figures.rssMiB / figures.devices, 1)} MiB, Pss ${format(figures.pssMiB / figures.devices, 1)} MiB`,
    );
    if (base && !('skipped' in base) && layout !== results.baseline) {
      lines.push(
        `${layout} / ${results.baseline}: RSS ${ratio(figures.rssMiB, base.rssMiB)}, ` +
          `Pss ${ratio(figures.pssMiB, base.pssMiB)}`,
      );
    }
  }
  return lines.map((line) => (markdown ? `- ${line}` : line)).join('\n');
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
    Object.keys(results.memory).length > 0 ? renderMemory(results, true) : '(not measured)',
    '',
  ];
  writeFileSync(join(outDir, 'results.md'), markdown.join('\n'));
}
