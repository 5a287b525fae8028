import { readFileSync } from 'node:fs';

/** Reads /proc/PID/FILE of a process that may have exited meanwhile (then undefined). */
export function readProcFile(pid: number, file: string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return undefined;
  }
}

/** The numeric `Name: value [kB]` fields of /proc/PID/status or smaps_rollup (kB values as given). */
export function procFields(text: string): Map<string, number> {
  const fields = new Map<string, number>();
  for (const line of text.split('\n')) {
    const match = /^(\w+):\s+(\d+)(?: kB)?$/.exec(line);
    if (match) fields.set(match[1]!, Number(match[2]));
  }
  return fields;
}
