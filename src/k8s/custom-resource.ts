import { ApiException, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { GROUP, KubeObject, ResourceKind, VERSION } from './resources';

export interface Selector {
  labelSelector?: string;
  fieldSelector?: string;
}

export interface ObjectList<T> {
  items: T[];
  metadata: { resourceVersion: string };
}

/** Whether `error` is the API server answering with HTTP status `code`. */
export function isStatus(error: unknown, code: number): boolean {
  return error instanceof ApiException && error.code === code;
}

const MAX_CONFLICT_RETRIES = 10;

/** One cluster-scoped custom resource of ours: reads, writes and optimistic-concurrency updates. */
export class CustomResource<T extends KubeObject> {
  private readonly api: CustomObjectsApi;

  constructor(
    readonly config: KubeConfig,
    readonly kind: ResourceKind,
  ) {
    this.api = config.makeApiClient(CustomObjectsApi);
  }

  /** The collection's URL path, for watches. */
  get path(): string {
    return `/apis/${GROUP}/${VERSION}/${this.kind.plural}`;
  }

  async get(name: string): Promise<T | null> {
    try {
      return (await this.api.getClusterCustomObject({ ...this.coordinates(), name })) as T;
    } catch (error) {
      if (isStatus(error, 404)) return null;
      throw error;
    }
  }

  async list(selector: Selector = {}): Promise<ObjectList<T>> {
    return (await this.api.listClusterCustomObject({ ...this.coordinates(), ...selector })) as ObjectList<T>;
  }

  /** Creates the object; 409 when one of that name exists. */
  async create(object: T): Promise<T> {
    return (await this.api.createClusterCustomObject({ ...this.coordinates(), body: object })) as T;
  }

  /** Asks for deletion (finalizers may keep the object a while); false when it was not there. */
  async delete(name: string): Promise<boolean> {
    try {
      await this.api.deleteClusterCustomObject({ ...this.coordinates(), name });
      return true;
    } catch (error) {
      if (isStatus(error, 404)) return false;
      throw error;
    }
  }

  /**
   * Reads the object, lets `change` edit it and writes it back with its resourceVersion, so a
   * concurrent writer makes the API server answer 409: then it starts over from a fresh read.
   * `change` returns null to write nothing. Null when the object does not exist (any more).
   */
  async update(
    name: string,
    change: (current: T) => T | null,
    part: 'main' | 'status' = 'main',
  ): Promise<T | null> {
    for (let attempt = 1; ; attempt++) {
      const current = await this.get(name);
      if (!current) return null;
      const changed = change(structuredClone(current));
      if (!changed) return current;
      try {
        const request = { ...this.coordinates(), name, body: changed };
        return (
          part === 'main'
            ? await this.api.replaceClusterCustomObject(request)
            : await this.api.replaceClusterCustomObjectStatus(request)
        ) as T;
      } catch (error) {
        if (isStatus(error, 404)) return null;
        if (!isStatus(error, 409) || attempt >= MAX_CONFLICT_RETRIES) throw error;
      }
    }
  }

  private coordinates(): { group: string; version: string; plural: string } {
    return { group: GROUP, version: VERSION, plural: this.kind.plural };
  }
}
