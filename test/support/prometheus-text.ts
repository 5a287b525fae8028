import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

/** One sample line of the Prometheus text format. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g;

/** The samples of an exposition (comments and blank lines left out). */
export function parseSamples(text: string): Sample[] {
  return text
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const match = SAMPLE.exec(line);
      assert.ok(match, `not a sample line: ${line}`);
      const labels: Record<string, string> = {};
      for (const [, key, value] of match[2]?.matchAll(LABEL) ?? []) labels[key!] = JSON.parse(`"${value}"`);
      return { name: match[1]!, labels, value: Number(match[3]) };
    });
}

/** The samples named `name` whose labels include `labels`. */
export function samplesOf(samples: Sample[], name: string, labels: Record<string, string> = {}): Sample[] {
  return samples.filter(
    (sample) =>
      sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value),
  );
}

/** The value of the one sample named `name` with exactly `labels`; fails unless there is one. */
export function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const matching = samplesOf(samples, name, labels).filter(
    (sample) => Object.keys(sample.labels).length === Object.keys(labels).length,
  );
  assert.equal(matching.length, 1, `${name}${JSON.stringify(labels)}: ${matching.length} samples`);
  return matching[0]!.value;
}

/** Scrapes a /metrics URL, which must answer 200 in the text format. */
export async function scrape(url: string): Promise<{ text: string; samples: Sample[] }> {
  const response = await fetch(url);
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const text = await response.text();
  return { text, samples: parseSamples(text) };
}

/** `promtool check metrics` on an exposition: its problems (none when it passes). */
export function promtoolProblems(exposition: string): string {
  const run = spawnSync('promtool', ['check', 'metrics'], { input: exposition, encoding: 'utf8' });
  if (run.error)
    throw new Error(`cannot run promtool (scripts/install-deps.sh installs it): ${run.error.message}`);
  const output = `${run.stdout}${run.stderr}`;
  return run.status === 0 && output === '' ? '' : `exit ${run.status}: ${output}`;
}
