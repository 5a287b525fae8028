// What the API server hands validating admission for a write: the operation, the resource, the
// user, and the object before and after as its REST strategies leave them. For a resource with a
// status subresource, an update of the object itself keeps the status it had, and an update of
// /status keeps everything but the status (the custom resource strategies of
// apiextensions-apiserver); a create has no old object, a delete no new one.
import { AdmissionAttributes, AdmissionPolicies, Denial, UserInfo } from './admission-policy';
import { KubeObject } from './chart';

type Json = Record<string, unknown>;

/** A write to one object, as the REST path and body give it. */
export interface Write {
  operation: AdmissionAttributes['operation'];
  group: string;
  version: string;
  /** The plural resource name, without subresource. */
  resource: string;
  subresource?: string;
  namespace?: string;
  /** Empty for a create: the name is in the body. */
  name: string;
  body: Json | null;
  user: UserInfo;
}

/** "group/plural" of each rendered CustomResourceDefinition with a status subresource. */
function statusSubresources(objects: KubeObject[]): Set<string> {
  const found = new Set<string>();
  for (const crd of objects.filter((object) => object.kind === 'CustomResourceDefinition')) {
    const versions = crd.spec.versions as { subresources?: { status?: object } }[];
    if (versions.some((version) => version.subresources?.status !== undefined))
      found.add(`${crd.spec.group}/${crd.spec.names.plural}`);
  }
  return found;
}

/** The object after the write, as admission sees it. */
function objectAfter(write: Write, current: Json | null, hasStatus: boolean): Json | null {
  if (write.operation === 'DELETE') return null;
  const body = write.body ?? {};
  if (write.operation === 'CREATE' || !hasStatus || !current) return body;
  const [kept, statusFrom] = write.subresource === 'status' ? [current, body] : [body, current];
  const object = { ...kept };
  delete object.status;
  if ('status' in statusFrom) object.status = statusFrom.status;
  return object;
}

/** The chart's policies, and which resources have a status subresource (from its CRDs). */
export class Admission {
  private constructor(
    readonly policies: AdmissionPolicies,
    private readonly withStatus: Set<string>,
  ) {}

  /** From a render that includes the CRDs (render({ includeCrds: true })). */
  static of(objects: KubeObject[]): Admission {
    return new Admission(AdmissionPolicies.of(objects), statusSubresources(objects));
  }

  concerns(write: Omit<Write, 'body' | 'user'>): boolean {
    return this.policies.concerns(write);
  }

  /** The denial of the write given the object as it is now (null for a create), or null. */
  admit(write: Write, current: Json | null): Denial | null {
    const hasStatus = this.withStatus.has(`${write.group}/${write.resource}`);
    const object = objectAfter(write, current, hasStatus);
    const name = write.name || String((object?.metadata as Json | undefined)?.name ?? '');
    return this.policies.admit({
      operation: write.operation,
      group: write.group,
      version: write.version,
      resource: write.resource,
      ...(write.subresource ? { subresource: write.subresource } : {}),
      name,
      ...(write.namespace ? { namespace: write.namespace } : {}),
      user: write.user,
      object,
      oldObject: write.operation === 'CREATE' ? null : current,
    });
  }
}
