import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

const byPath = new Map<string, string>();

/**
 * Identifies the code a process runs (a digest of the CLI bundle it was started from), so a new
 * plugin can tell device servers of an older build from its own and hand their devices over.
 * A bundle does not change under a running process: each is hashed once.
 */
export function buildId(cliPath: string = process.argv[1]!): string {
  let id = byPath.get(cliPath);
  if (id === undefined) {
    id = createHash('sha256').update(readFileSync(cliPath)).digest('hex').slice(0, 16);
    byPath.set(cliPath, id);
  }
  return id;
}
