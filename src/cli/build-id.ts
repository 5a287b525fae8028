import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

let cached: string | undefined;

/**
 * Identifies the code a process runs (a digest of the CLI bundle it was started from), so a new
 * plugin can tell device servers of an older build from its own and hand their devices over.
 */
export function buildId(cliPath: string = process.argv[1]!): string {
  if (cliPath === process.argv[1] && cached) return cached;
  const id = createHash('sha256').update(readFileSync(cliPath)).digest('hex').slice(0, 16);
  if (cliPath === process.argv[1]) cached = id;
  return id;
}
