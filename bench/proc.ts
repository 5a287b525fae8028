import { readdirSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { run } from '../test/kernel/support';
import { procFields, readProcFile } from '../src/sys/proc-files';

/** Clock ticks per second, the unit of /proc/PID/stat's CPU times. */
export const CLOCK_TICKS = Number(run('getconf', ['CLK_TCK']).trim());

/** Parent pid and CPU time (utime + stime, in clock ticks) from /proc/PID/stat. */
export function parseStat(text: string): { ppid: number; cpuTicks: number } {
  // Fields after the command name, which may itself hold spaces and parentheses: state is field 3.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { ppid: Number(fields[1]), cpuTicks: Number(fields[11]) + Number(fields[12]) };
}

export const MEMORY_FIELDS = ['VmRSS', 'VmHWM', 'RssAnon', 'RssFile', 'RssShmem', 'Pss'] as const;
/** KiB, summed over processes. */
export type Memory = Record<(typeof MEMORY_FIELDS)[number], number>;

/** The memory fields of /proc/PID/status and Pss of /proc/PID/smaps_rollup, in KiB. */
export function parseMemory(status: string, smapsRollup: string): Memory {
  const fields = procFields(`${status}\n${smapsRollup}`);
  return Object.fromEntries(MEMORY_FIELDS.map((field) => [field, fields.get(field) ?? 0])) as Memory;
}

/** The machine's CPU ticks from /proc/stat's `cpu` line: idle (idle + iowait) and all together. */
export function parseSystemTicks(text: string): { idle: number; total: number } {
  const line = text.split('\n').find((candidate) => candidate.startsWith('cpu '));
  if (!line) throw new Error('no cpu line in /proc/stat');
  // user nice system idle iowait irq softirq steal (guest time is already in user and nice).
  const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
  return { idle: ticks[3]! + ticks[4]!, total: ticks.reduce((sum, value) => sum + value, 0) };
}

export function systemTicks(): { idle: number; total: number } {
  return parseSystemTicks(readFileSync('/proc/stat', 'utf8'));
}

/** Completed requests (reads + writes) from /sys/block/DEV/stat. */
export function parseBlockStat(text: string): number {
  const fields = text.trim().split(/\s+/).map(Number);
  return fields[0]! + fields[4]!;
}

/** `root` and its live descendants. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    const stat = readProcFile(Number(entry), 'stat');
    if (stat === undefined) continue;
    const { ppid } = parseStat(stat);
    children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
  }
  const tree: number[] = [];
  for (const pending = [root]; pending.length > 0;) {
    const pid = pending.pop()!;
    tree.push(pid);
    pending.push(...(children.get(pid) ?? []));
  }
  return tree;
}

/** The command name of /proc/PID/stat (a thread's name in /proc/PID/task/TID/stat). */
export function statName(text: string): string {
  return text.slice(text.indexOf('(') + 1, text.lastIndexOf(')'));
}

/**
 * CPU ticks of every thread of `pids`, summed per thread name (librbd's `msgr-worker-0`, node's
 * `node`, ...): where a server's CPU goes. A process's main thread is marked `(main)`, and the
 * threads of processes after the first (a daemon's standby) carry their pid.
 */
export function cpuTicksByThread(pids: number[]): Map<string, number> {
  const byName = new Map<string, number>();
  for (const [index, pid] of pids.entries()) {
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue; // exited
    }
    for (const task of tasks) {
      const stat = readProcFile(pid, `task/${task}/stat`);
      if (stat === undefined) continue;
      const name = `${statName(stat)}${Number(task) === pid ? ' (main)' : ''}${index > 0 ? ` [${pid}]` : ''}`;
      byName.set(name, (byName.get(name) ?? 0) + parseStat(stat).cpuTicks);
    }
  }
  return byName;
}

export function cpuTicks(pids: number[]): number {
  return pids.reduce((sum, pid) => {
    const stat = readProcFile(pid, 'stat');
    return sum + (stat === undefined ? 0 : parseStat(stat).cpuTicks);
  }, 0);
}

export function memoryOf(pids: number[]): Memory {
  const total = parseMemory('', '');
  for (const pid of pids) {
    const memory = parseMemory(readProcFile(pid, 'status') ?? '', readProcFile(pid, 'smaps_rollup') ?? '');
    for (const field of MEMORY_FIELDS) total[field] += memory[field];
  }
  return total;
}

export function blockIos(device: string): number {
  return parseBlockStat(readFileSync(`/sys/block/${basename(device)}/stat`, 'utf8'));
}

/** Live processes whose command line holds every one of `args` (argv[0] matched by its basename). */
export function processesWith(command: string, args: string[]): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number)
    .filter((pid) => {
      const argv = (readProcFile(pid, 'cmdline') ?? '').split('\0');
      return basename(argv[0] ?? '') === command && args.every((arg) => argv.includes(arg));
    });
}
