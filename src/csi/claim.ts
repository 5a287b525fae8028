import { VolumeRecord } from './store';

export type Claim = NonNullable<VolumeRecord['claim']>;

/** What external-provisioner's --extra-create-metadata adds to CreateVolume's parameters. */
export const PVC_NAME = 'csi.storage.k8s.io/pvc/name';
export const PVC_NAMESPACE = 'csi.storage.k8s.io/pvc/namespace';

/** Where a volume's claim travels to the node in volume_context (RBD volumes have no record there). */
const CONTEXT_NAME = 'csi.vduse.dev/pvc-name';
const CONTEXT_NAMESPACE = 'csi.vduse.dev/pvc-namespace';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** A claim only when both names are what Kubernetes allows (they end up in API paths). */
function validClaim(name: string | undefined, namespace: string | undefined): Claim | null {
  return name !== undefined &&
    namespace !== undefined &&
    DNS_SUBDOMAIN.test(name) &&
    DNS_LABEL.test(namespace)
    ? { name, namespace }
    : null;
}

/** The claim CreateVolume is provisioning for, when the provisioner says. */
export function claimOfParameters(parameters: Record<string, string> | undefined): Claim | null {
  return validClaim(parameters?.[PVC_NAME], parameters?.[PVC_NAMESPACE]);
}

export function claimContext(claim: Claim | null): Record<string, string> {
  return claim ? { [CONTEXT_NAME]: claim.name, [CONTEXT_NAMESPACE]: claim.namespace } : {};
}

export function claimOfContext(context: Record<string, string> | undefined): Claim | null {
  return validClaim(context?.[CONTEXT_NAME], context?.[CONTEXT_NAMESPACE]);
}
