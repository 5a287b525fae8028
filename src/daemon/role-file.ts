import { writeFileAtomic } from '../sys/atomic-file';
import { DaemonRole } from './daemon-role';

/**
 * Writes a daemon's role to `path` (replaced whole, never seen half-written), for probes that read
 * a file: a pod's exec readiness probe asks whether its own container's daemon serves or stands by.
 */
export function writeRoleFile(path: string, role: DaemonRole | 'stopped'): void {
  writeFileAtomic(path, `${role}\n`, 0o644);
}
