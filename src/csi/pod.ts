import { isDnsLabel, isDnsSubdomain, isUid } from '../k8s/object-names';

/** A pod a volume is published to, as kubelet names it (CSIDriver podInfoOnMount). */
export interface Pod {
  name: string;
  namespace: string;
  uid: string;
}

/** What kubelet adds to NodePublishVolume's volume_context when the CSIDriver asks for pod info. */
export const POD_NAME = 'csi.storage.k8s.io/pod.name';
export const POD_NAMESPACE = 'csi.storage.k8s.io/pod.namespace';
export const POD_UID = 'csi.storage.k8s.io/pod.uid';

/** The pod a publication is for, when kubelet said and every part is what Kubernetes allows. */
export function podOfContext(context: Record<string, string> | undefined): Pod | null {
  const name = context?.[POD_NAME];
  const namespace = context?.[POD_NAMESPACE];
  const uid = context?.[POD_UID];
  return isDnsSubdomain(name) && isDnsLabel(namespace) && isUid(uid) ? { name, namespace, uid } : null;
}
