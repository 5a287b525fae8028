import { accessSync, constants, existsSync } from 'node:fs';
import { messageOf } from '../daemon/start-failure';
import { log } from '../log';
import { VdpaClient } from '../vdpa';

export const DRIVER_NAME = 'csi.vduse.dev';
export const DRIVER_VERSION = '0.1.0';

export interface IdentityOptions {
  controller: boolean;
  node: boolean;
  dataDir: string;
  /** Told when readiness changes (the first answer counts as a change): null is ready. */
  onReadinessChange?: (problem: string | null) => void;
}

/** The CSI Identity service: who we are, what we serve, and whether we can serve now. */
export class IdentityService {
  private lastProblem: string | null | undefined;

  constructor(private readonly options: IdentityOptions) {}

  GetPluginInfo(): Promise<object> {
    return Promise.resolve({ name: DRIVER_NAME, vendor_version: DRIVER_VERSION, manifest: {} });
  }

  GetPluginCapabilities(): Promise<object> {
    const services = [
      ...(this.options.controller ? ['CONTROLLER_SERVICE'] : []),
      'VOLUME_ACCESSIBILITY_CONSTRAINTS',
    ];
    return Promise.resolve({
      capabilities: [
        ...services.map((type) => ({ service: { type } })),
        { volume_expansion: { type: 'ONLINE' } },
      ],
    });
  }

  /** Not ready is an answer (ready=false), not an error: the CO keeps probing. */
  async Probe(): Promise<object> {
    const problem = await this.readinessProblem();
    return { ready: { value: problem === null } };
  }

  /** Why this plugin cannot serve now, or null; a change is logged and reported once. */
  async readinessProblem(): Promise<string | null> {
    const problem = await this.findReadinessProblem();
    if (problem !== this.lastProblem) {
      this.lastProblem = problem;
      if (problem) log.warn('not ready', { reason: problem });
      else log.info('ready');
      this.options.onReadinessChange?.(problem);
    }
    return problem;
  }

  private async findReadinessProblem(): Promise<string | null> {
    if (this.options.controller) {
      try {
        accessSync(this.options.dataDir, constants.W_OK);
      } catch (error) {
        return `data directory ${this.options.dataDir} is not writable: ${String(error)}`;
      }
    }
    if (!this.options.node) return null;
    try {
      accessSync('/dev/vduse/control', constants.R_OK | constants.W_OK);
    } catch {
      return '/dev/vduse/control is missing or not accessible: load the vduse module (modprobe vduse)';
    }
    if (!existsSync('/sys/bus/vdpa/drivers/virtio_vdpa'))
      return 'the virtio_vdpa driver is not loaded (modprobe virtio_vdpa)';
    try {
      const vdpa = await VdpaClient.open();
      await vdpa.close();
    } catch (error) {
      // VdpaClient tells a missing module from a network namespace without the family.
      return `cannot open the vdpa generic netlink family: ${messageOf(error)}`;
    }
    return null;
  }
}
