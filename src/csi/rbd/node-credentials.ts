import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../sys/atomic-file';
import { monHost } from './monitors';
import { CephCredentials, keyringText } from './secrets';
import { isRbdDeviceName } from './volume-id';

export interface CephClientFiles {
  conf: string;
  keyring: string;
}

/**
 * What a node's device servers of an RBD volume read to reach the cluster:
 * `<state-dir>/ceph/<device>/{ceph.conf,keyring}`, directories 0700 and files 0600 (the state
 * directory is a tmpfs in production, so a key never reaches a disk). Servers get the paths, never
 * the key: a command line is readable by anyone in /proc.
 */
export class NodeCephFiles {
  private readonly root: string;

  constructor(stateDir: string) {
    this.root = join(stateDir, 'ceph');
  }

  paths(deviceName: string): CephClientFiles {
    const directory = this.directory(deviceName);
    return { conf: join(directory, 'ceph.conf'), keyring: join(directory, 'keyring') };
  }

  write(deviceName: string, monitors: readonly string[], credentials: CephCredentials): CephClientFiles {
    const directory = this.directory(deviceName);
    for (const path of [this.root, directory]) {
      mkdirSync(path, { recursive: true, mode: 0o700 });
      chmodSync(path, 0o700);
    }
    const files = this.paths(deviceName);
    writeFileAtomic(files.keyring, keyringText(credentials));
    writeFileAtomic(files.conf, `[global]\nmon_host = ${monHost(monitors)}\n`);
    return files;
  }

  remove(deviceName: string): void {
    rmSync(this.directory(deviceName), { recursive: true, force: true });
  }

  private directory(deviceName: string): string {
    if (!isRbdDeviceName(deviceName))
      throw new Error(`not an RBD device name: ${JSON.stringify(deviceName)}`);
    return join(this.root, deviceName);
  }
}
