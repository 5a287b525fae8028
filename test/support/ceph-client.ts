import { readFileSync } from 'node:fs';

/** The key of a keyring file's one entry: what a Kubernetes secret's userKey holds. */
export function keyOf(keyring: string): string {
  const match = /^\s*key\s*=\s*(\S+)\s*$/m.exec(readFileSync(keyring, 'utf8'));
  if (!match) throw new Error(`no key in ${keyring}`);
  return match[1]!;
}

/** The monitors of a ceph.conf, as a StorageClass or a cluster file lists them. */
export function monitorsOf(conf: string): string {
  const match = /^\s*mon_host\s*=\s*(\S+)\s*$/m.exec(readFileSync(conf, 'utf8'));
  if (!match) throw new Error(`no mon_host in ${conf}`);
  return match[1]!;
}
