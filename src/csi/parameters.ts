import { invalidArgument } from './errors';

/** How an image takes space: as it is written (sparse), or all of it when made (fallocate). */
export type Provisioning = 'thin' | 'thick';

/** How a volume is served and how it counts against its node's space, from the StorageClass (all optional). */
export interface VolumeParameters {
  queues: number;
  queueSize: number;
  blockSize: number;
  /**
   * How far the provisioned sizes of the node's volumes may exceed the room its data directory has
   * for them when a volume of this class is made or grown (1: not at all).
   */
  overcommitRatio: number;
  provisioning: Provisioning;
}

export const DEFAULT_PARAMETERS: VolumeParameters = {
  queues: 1,
  queueSize: 256,
  blockSize: 512,
  overcommitRatio: 1,
  provisioning: 'thin',
};

export const MAXIMUM_OVERCOMMIT_RATIO = 1000;

/** Keys the Kubernetes sidecars add (PVC name and namespace, PV name, secrets): not ours to check. */
const SIDECAR_PREFIX = 'csi.storage.k8s.io/';

interface Rule<T> {
  /** The value, or undefined when the text is not one. */
  parse: (text: string) => T | undefined;
  expected: string;
}

const integer =
  (accept: (value: number) => boolean) =>
  (text: string): number | undefined => {
    const value = /^\d+$/.test(text) ? Number(text) : NaN;
    return accept(value) ? value : undefined;
  };

const RULES: { [K in keyof VolumeParameters]: Rule<VolumeParameters[K]> } = {
  queues: { parse: integer((value) => value >= 1 && value <= 16), expected: 'an integer from 1 to 16' },
  queueSize: {
    parse: integer((value) => value >= 16 && value <= 1024 && (value & (value - 1)) === 0),
    expected: 'a power of two from 16 to 1024',
  },
  blockSize: {
    parse: integer((value) => [512, 1024, 2048, 4096].includes(value)),
    expected: '512, 1024, 2048 or 4096',
  },
  overcommitRatio: {
    parse: (text) => {
      const value = /^\d+(\.\d+)?$/.test(text) ? Number(text) : NaN;
      return value >= 1 && value <= MAXIMUM_OVERCOMMIT_RATIO ? value : undefined;
    },
    expected: `a decimal number from 1.0 to ${MAXIMUM_OVERCOMMIT_RATIO}`,
  },
  provisioning: {
    parse: (text) => (text === 'thin' || text === 'thick' ? text : undefined),
    expected: 'thin or thick',
  },
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
    setParameter(parsed, key as keyof VolumeParameters, text);
  }
  if (parsed.provisioning === 'thick' && parsed.overcommitRatio !== 1)
    throw invalidArgument(
      'provisioning thick takes all of its space when the volume is made: it cannot be overcommitted (overcommitRatio must be 1)',
    );
  return parsed;
}

function setParameter<K extends keyof VolumeParameters>(
  target: VolumeParameters,
  name: K,
  text: string,
): void {
  const rule: Rule<VolumeParameters[K]> = RULES[name];
  const value = rule.parse(text);
  if (value === undefined)
    throw invalidArgument(`parameter ${name} must be ${rule.expected}, got ${JSON.stringify(text)}`);
  target[name] = value;
}

/** Parameters of a record written before some of them existed: the missing ones have their defaults. */
export function storedParameters(stored: Partial<VolumeParameters>): VolumeParameters {
  return { ...DEFAULT_PARAMETERS, ...stored };
}

export function sameParameters(a: VolumeParameters, b: VolumeParameters): boolean {
  return (Object.keys(RULES) as (keyof VolumeParameters)[]).every((name) => a[name] === b[name]);
}

/** What a volume's volume_context carries to the node (how to serve the device). */
export function parametersContext(parameters: VolumeParameters): Record<string, string> {
  return {
    queues: String(parameters.queues),
    queueSize: String(parameters.queueSize),
    blockSize: String(parameters.blockSize),
  };
}
