import { isDnsLabel, isDnsSubdomain } from '../k8s/object-names';
import { VolumeRecord } from './store';

export type Claim = NonNullable<VolumeRecord['claim']>;

/** What external-provisioner's --extra-create-metadata adds to CreateVolume's parameters. */
export const PVC_NAME = 'csi.storage.k8s.io/pvc/name';
export const PVC_NAMESPACE = 'csi.storage.k8s.io/pvc/namespace';
export const PV_NAME = 'csi.storage.k8s.io/pv/name';

/** Where a volume's claim travels to the node in volume_context (RBD volumes have no record there). */
const CONTEXT_NAME = 'csi.vduse.dev/pvc-name';
const CONTEXT_NAMESPACE = 'csi.vduse.dev/pvc-namespace';
const CONTEXT_VOLUME_NAME = 'csi.vduse.dev/pv-name';

/**
 * A claim only when both names are what Kubernetes allows (they end up in API paths); the name of
 * its PersistentVolume (the claim's spec.volumeName) with it when given and well-formed.
 */
function validClaim(
  name: string | undefined,
  namespace: string | undefined,
  volumeName: string | undefined,
): Claim | null {
  if (!isDnsSubdomain(name) || !isDnsLabel(namespace)) return null;
  return isDnsSubdomain(volumeName) ? { name, namespace, volumeName } : { name, namespace };
}

/** The claim CreateVolume is provisioning for, when the provisioner says. */
export function claimOfParameters(parameters: Record<string, string> | undefined): Claim | null {
  return validClaim(parameters?.[PVC_NAME], parameters?.[PVC_NAMESPACE], parameters?.[PV_NAME]);
}

export function claimContext(claim: Claim | null): Record<string, string> {
  if (!claim) return {};
  return {
    [CONTEXT_NAME]: claim.name,
    [CONTEXT_NAMESPACE]: claim.namespace,
    ...(claim.volumeName === undefined ? {} : { [CONTEXT_VOLUME_NAME]: claim.volumeName }),
  };
}

export function claimOfContext(context: Record<string, string> | undefined): Claim | null {
  return validClaim(context?.[CONTEXT_NAME], context?.[CONTEXT_NAMESPACE], context?.[CONTEXT_VOLUME_NAME]);
}
