import { FIO_JOBS } from './fio';

/** What one bench run does, from the environment (names as in the README's `npm run bench` note). */
export interface BenchConfig {
  outDir: string;
  scratchDir: string;
  runtimeS: number;
  rampS: number;
  /** Seconds of the first job each layout runs, unmeasured, once it serves (JIT, caches, pools). */
  warmUpS: number;
  repeats: number;
  queueCounts: number[];
  jobs: string[];
  imageMiB: number;
  /** Names of the layouts to compare (see layouts.ts). */
  layouts: string[];
  readyTimeoutMs: number;
  /** The file case (the layouts above serving a tmpfs image); off for RBD-only runs. */
  fileCase: boolean;
  /** The memory case: once per count of volumes (the fixed and per-volume costs come from two). */
  memory: { enabled: boolean; deviceCounts: number[]; imageMiB: number };
  /** The stage case: NodeStageVolume of this many volumes at once, then one after another. */
  stage: { enabled: boolean; volumes: number };
  /** The RBD case: its clients (none: off), each one's image size, the kill case's verified MiB. */
  rbd: { layouts: string[]; imageMiB: number; killMiB: number };
}

type Env = Record<string, string | undefined>;

function envInt(env: Env, name: string, fallback: number): number {
  const text = env[name]?.trim();
  if (!text) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value))
    throw new Error(`${name} must be a whole number, not ${JSON.stringify(text)}`);
  return value;
}

function envCount(env: Env, name: string, fallback: number): number {
  const value = envInt(env, name, fallback);
  if (value < 1) throw new Error(`${name}: ${value} is not a count`);
  return value;
}

function envList(env: Env, name: string, fallback: string[]): string[] {
  const text = env[name]?.trim();
  return text ? text.split(/[\s,]+/) : fallback;
}

function positiveInts(name: string, values: string[]): number[] {
  return values.map((text) => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < 1)
      throw new Error(`${name}: ${JSON.stringify(text)} is not a count`);
    return value;
  });
}

function oneOf(name: string, values: string[], known: string[]): string[] {
  const unknown = values.filter((value) => !known.includes(value));
  if (unknown.length > 0)
    throw new Error(`${name}: unknown ${unknown.join(', ')}; known: ${known.join(' ')}`);
  return values;
}

/** VDUSE_CSI_BENCH_RBD: unset or 0 for none, 1 for every RBD client, or a list of them. */
function rbdLayouts(env: Env, known: string[]): string[] {
  const text = env.VDUSE_CSI_BENCH_RBD?.trim() ?? '';
  if (text === '' || text === '0') return [];
  if (text === '1') return known;
  return oneOf('VDUSE_CSI_BENCH_RBD', envList(env, 'VDUSE_CSI_BENCH_RBD', []), known);
}

export function readConfig(env: Env, knownLayouts: string[], knownRbdLayouts: string[]): BenchConfig {
  const jobNames = Object.keys(FIO_JOBS);
  return {
    outDir: env.VDUSE_CSI_OUT ?? '.',
    scratchDir: env.VDUSE_CSI_SCRATCH ?? '/tmp',
    runtimeS: envInt(env, 'VDUSE_CSI_BENCH_RUNTIME', 10),
    rampS: envInt(env, 'VDUSE_CSI_BENCH_RAMP', 2),
    // Under emulation our daemon compiles its hot code over 10+ s of its first I/O (V8's worker
    // threads took 2.8-4.0 CPU s of the first run, 0.2-0.6 s of later ones): not in any repeat.
    warmUpS: envInt(env, 'VDUSE_CSI_BENCH_WARMUP', 15),
    repeats: envInt(env, 'VDUSE_CSI_BENCH_REPEATS', 3),
    queueCounts: positiveInts('VDUSE_CSI_BENCH_QUEUES', envList(env, 'VDUSE_CSI_BENCH_QUEUES', ['1', '2'])),
    jobs: oneOf('VDUSE_CSI_BENCH_JOBS', envList(env, 'VDUSE_CSI_BENCH_JOBS', jobNames), jobNames),
    imageMiB: envInt(env, 'VDUSE_CSI_BENCH_SIZE_MIB', 1024),
    layouts: oneOf(
      'VDUSE_CSI_BENCH_DAEMONS',
      envList(env, 'VDUSE_CSI_BENCH_DAEMONS', knownLayouts),
      knownLayouts,
    ),
    // Our server took 85-100 s to be ready in the TCG VM (qemu-storage-daemon: 1-4 s).
    readyTimeoutMs: envInt(env, 'VDUSE_CSI_BENCH_READY_TIMEOUT', 400) * 1000,
    fileCase: envInt(env, 'VDUSE_CSI_BENCH_FILE', 1) !== 0,
    memory: {
      enabled: envInt(env, 'VDUSE_CSI_BENCH_MEMORY', 1) !== 0,
      deviceCounts: positiveInts(
        'VDUSE_CSI_BENCH_MEM_DEVICES',
        envList(env, 'VDUSE_CSI_BENCH_MEM_DEVICES', ['16', '64']),
      ),
      imageMiB: envInt(env, 'VDUSE_CSI_BENCH_MEM_SIZE_MIB', 64),
    },
    stage: {
      enabled: envInt(env, 'VDUSE_CSI_BENCH_STAGE', 1) !== 0,
      volumes: envCount(env, 'VDUSE_CSI_BENCH_STAGE_VOLUMES', 16),
    },
    rbd: {
      layouts: rbdLayouts(env, knownRbdLayouts),
      imageMiB: envInt(env, 'VDUSE_CSI_BENCH_RBD_SIZE_MIB', 256),
      killMiB: envInt(env, 'VDUSE_CSI_BENCH_KILL_MIB', 16),
    },
  };
}
