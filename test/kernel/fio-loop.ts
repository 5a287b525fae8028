import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Reply } from '../support/csi-harness';

/**
 * fio passes (crc32c-verified 4k random writes at iodepth 32 over `sizeMiB`, then read back) back to back until
 * `stopFile` appears; each pass writes its JSON report to `<out>/fio-<n>.json`. Exits non-zero at the
 * first pass that reports an error.
 */
export function fioLoop(
  target: string,
  isBlock: boolean,
  out: string,
  stopFile: string,
  sizeMiB = 24,
): ChildProcess {
  const where = isBlock ? `--filename=${target} --offset=64M` : `--filename=${target}/fio.data`;
  const script = `
    n=0
    while [ ! -e ${stopFile} ]; do
      n=$((n+1))
      fio --name=pass${'$'}n ${where} --size=${sizeMiB}M --rw=randwrite --bs=4k --ioengine=libaio --iodepth=32 \\
        --numjobs=1 --direct=1 --verify=crc32c --do_verify=1 --verify_fatal=1 \\
        --output-format=json --output=${out}/fio-$n.json || { echo "fio pass $n failed"; cat ${out}/fio-$n.json; exit 1; }
    done
    echo "$n passes"`;
  return spawn('bash', ['-eu', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
}

export interface PassReport {
  errors: number;
  maxLatencyMs: number;
}

export function readPasses(out: string): PassReport[] {
  const reports: PassReport[] = [];
  for (let pass = 1; existsSync(join(out, `fio-${pass}.json`)); pass++) {
    const text = readFileSync(join(out, `fio-${pass}.json`), 'utf8');
    if (!text.includes('{')) continue;
    const job = (JSON.parse(text.slice(text.indexOf('{'))) as Reply).jobs[0];
    const maxNs = Math.max(job.write.clat_ns.max, job.read.clat_ns.max);
    reports.push({ errors: job.error, maxLatencyMs: maxNs / 1e6 });
  }
  return reports;
}
