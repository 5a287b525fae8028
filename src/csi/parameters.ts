import { invalidArgument } from './errors';

/** How a volume is served, from the StorageClass parameters (all optional). */
export interface VolumeParameters {
  queues: number;
  queueSize: number;
  blockSize: number;
}

export const DEFAULT_PARAMETERS: VolumeParameters = { queues: 1, queueSize: 256, blockSize: 512 };

/** Keys the Kubernetes sidecars add (PVC name and namespace, PV name, secrets): not ours to check. */
const SIDECAR_PREFIX = 'csi.storage.k8s.io/';

const RULES: Record<keyof VolumeParameters, (value: number) => boolean> = {
  queues: (value) => value >= 1 && value <= 16,
  queueSize: (value) => value >= 16 && value <= 1024 && (value & (value - 1)) === 0,
  blockSize: (value) => [512, 1024, 2048, 4096].includes(value),
};
const EXPECTED: Record<keyof VolumeParameters, string> = {
  queues: 'an integer from 1 to 16',
  queueSize: 'a power of two from 16 to 1024',
  blockSize: '512, 1024, 2048 or 4096',
};

export function parseParameters(parameters: Record<string, string> | undefined): VolumeParameters {
  const parsed: VolumeParameters = { ...DEFAULT_PARAMETERS };
  for (const [key, text] of Object.entries(parameters ?? {})) {
    if (key.startsWith(SIDECAR_PREFIX)) continue;
    if (!(key in RULES)) {
      throw invalidArgument(
        `unknown parameter ${JSON.stringify(key)} (known: ${Object.keys(RULES).join(', ')})`,
      );
    }
    const name = key as keyof VolumeParameters;
    const value = /^\d+$/.test(text) ? Number(text) : NaN;
    if (!RULES[name](value))
      throw invalidArgument(`parameter ${name} must be ${EXPECTED[name]}, got ${JSON.stringify(text)}`);
    parsed[name] = value;
  }
  return parsed;
}

export function sameParameters(a: VolumeParameters, b: VolumeParameters): boolean {
  return a.queues === b.queues && a.queueSize === b.queueSize && a.blockSize === b.blockSize;
}

/** What a volume's volume_context carries to the node. */
export function parametersContext(parameters: VolumeParameters): Record<string, string> {
  return {
    queues: String(parameters.queues),
    queueSize: String(parameters.queueSize),
    blockSize: String(parameters.blockSize),
  };
}
