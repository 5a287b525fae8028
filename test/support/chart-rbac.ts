// The API access each component needs, written down independently of the chart's templates so a
// test can hold the two against each other.
//
// The sidecars' rules are those of their own deploy manifests for the pinned versions
// (values.yaml sidecars.*.image.tag), optional rules (secrets, referencegrants) left out:
// - csi-provisioner v6.4.0: external-provisioner deploy/kubernetes/rbac.yaml as of v6.0.0, plus
//   watch/update on volumesnapshots, which 6.1.1 and 6.2.0 added for the snapshot-source
//   finalizer (release notes of #1458; 6.3 and 6.4 list no RBAC change).
// - csi-resizer v2.3.0: external-resizer deploy/kubernetes/rbac.yaml (volumeattributesclasses
//   get/list/watch is used by default since 2.0.0).
// - csi-snapshotter v8.7.0: external-snapshotter deploy/kubernetes/csi-snapshotter/
//   rbac-csi-snapshotter.yaml as of v8.4.0 (8.5 to 8.7 list no RBAC change).
// - Leader election (all three): leases in the release namespace. --enable-capacity:
//   csistoragecapacities, and get on pods and replicasets to find the owning Deployment.
//
// Ours, in cluster mode (store: kubernetes), are what src/k8s does, request by request; the test
// chart-rbac.test.ts runs the controller and node agents through an authorizing proxy holding the
// rendered roles and checks that each grant is used and nothing is refused:
// - the controller (custom-resource.ts, kube-store.ts, kube-realizer.ts): creates, gets, lists and
//   watches both kinds, deletes them, updates a volume (its capacity; snapshots never change);
//   never writes status. counted-events.ts: creates Events in the claim's namespace, after a get of
//   the claim for its uid (and on a pod, by the uid kubelet gave), patches their counts. node-capacity.ts read(): get of the ConfigMap vduse-csi-capacity.
// - the node agent (node-agent.ts): gets, lists and watches both kinds, updates their status and
//   updates the objects themselves to remove its finalizer. node-capacity.ts publish(): a JSON
//   merge patch of vduse-csi-capacity, or its create when it does not exist yet. readiness-events.ts:
//   creates Events on the node plugin's own pod in the release namespace.

export interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}

const rule = (apiGroups: string[], resources: string[], verbs: string[], resourceNames?: string[]): Rule => ({
  apiGroups,
  resources,
  verbs,
  ...(resourceNames ? { resourceNames } : {}),
});
/** The node agents' free-space reports (src/k8s/node-capacity.ts). */
export const CAPACITY_CONFIGMAP = 'vduse-csi-capacity';
const EVENTS_RW = ['list', 'watch', 'create', 'update', 'patch'];

export const PROVISIONER_RULES: Rule[] = [
  rule([''], ['persistentvolumes'], ['get', 'list', 'watch', 'create', 'patch', 'delete']),
  rule([''], ['persistentvolumeclaims'], ['get', 'list', 'watch', 'update']),
  rule(['storage.k8s.io'], ['storageclasses'], ['get', 'list', 'watch']),
  rule([''], ['events'], EVENTS_RW),
  rule(['snapshot.storage.k8s.io'], ['volumesnapshots'], ['get', 'list', 'watch', 'update']),
  rule(['snapshot.storage.k8s.io'], ['volumesnapshotcontents'], ['get', 'list']),
  rule(['storage.k8s.io'], ['csinodes'], ['get', 'list', 'watch']),
  rule([''], ['nodes'], ['get', 'list', 'watch']),
  rule(['storage.k8s.io'], ['volumeattachments'], ['get', 'list', 'watch']),
];

export const RESIZER_RULES: Rule[] = [
  rule([''], ['persistentvolumes'], ['get', 'list', 'watch', 'patch']),
  rule([''], ['persistentvolumeclaims'], ['get', 'list', 'watch']),
  rule([''], ['pods'], ['get', 'list', 'watch']),
  rule([''], ['persistentvolumeclaims/status'], ['patch']),
  rule([''], ['events'], EVENTS_RW),
  rule(['storage.k8s.io'], ['volumeattributesclasses'], ['get', 'list', 'watch']),
];

export const SNAPSHOTTER_RULES: Rule[] = [
  rule([''], ['events'], EVENTS_RW),
  rule(['snapshot.storage.k8s.io'], ['volumesnapshotclasses'], ['get', 'list', 'watch']),
  rule(['snapshot.storage.k8s.io'], ['volumesnapshotcontents'], ['get', 'list', 'watch', 'update', 'patch']),
  rule(['snapshot.storage.k8s.io'], ['volumesnapshotcontents/status'], ['update', 'patch']),
  rule(['groupsnapshot.storage.k8s.io'], ['volumegroupsnapshotclasses'], ['get', 'list', 'watch']),
  rule(
    ['groupsnapshot.storage.k8s.io'],
    ['volumegroupsnapshotcontents'],
    ['get', 'list', 'watch', 'update', 'patch'],
  ),
  rule(['groupsnapshot.storage.k8s.io'], ['volumegroupsnapshotcontents/status'], ['update', 'patch']),
];

/** Our controller, cluster-wide: its records (the two CRDs), and Warning Events on claims. */
export const CONTROLLER_RULES: Rule[] = [
  rule(['csi.vduse.dev'], ['vdusevolumes'], ['get', 'list', 'watch', 'create', 'update', 'delete']),
  rule(['csi.vduse.dev'], ['vdusesnapshots'], ['get', 'list', 'watch', 'create', 'delete']),
  rule([''], ['events'], ['create', 'patch']),
  rule([''], ['persistentvolumeclaims'], ['get']),
];

/** Our controller, in the release namespace: the node agents' capacity reports. */
export const CONTROLLER_NAMESPACE_RULES: Rule[] = [rule([''], ['configmaps'], ['get'], [CAPACITY_CONFIGMAP])];

/**
 * The node agent, cluster-wide: reads the records, reports on their status, drops its finalizer;
 * Events on its volumes' claims (a repeat is a patch of the count; the claim's uid a get) and on
 * its own pod.
 */
export const NODE_RULES: Rule[] = [
  rule(['csi.vduse.dev'], ['vdusevolumes', 'vdusesnapshots'], ['get', 'list', 'watch', 'update']),
  rule(['csi.vduse.dev'], ['vdusevolumes/status', 'vdusesnapshots/status'], ['update']),
  rule([''], ['events'], ['create', 'patch']),
  rule([''], ['persistentvolumeclaims'], ['get']),
];

/** The node plugin, in the release namespace: its capacity report (create cannot name its object). */
export const NODE_NAMESPACE_RULES: Rule[] = [
  rule([''], ['configmaps'], ['create']),
  rule([''], ['configmaps'], ['patch'], [CAPACITY_CONFIGMAP]),
];

export const LEADER_ELECTION_RULES: Rule[] = [
  rule(['coordination.k8s.io'], ['leases'], ['get', 'watch', 'list', 'delete', 'update', 'create']),
];

export const CAPACITY_RULES: Rule[] = [
  rule(
    ['storage.k8s.io'],
    ['csistoragecapacities'],
    ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
  ),
  rule([''], ['pods'], ['get']),
  rule(['apps'], ['replicasets'], ['get']),
];

/**
 * Rules as a sorted set of "group/resource:verb" grants ("group/resource[name]:verb" when the rule
 * names its objects), so order and grouping do not matter.
 */
export function grants(rules: Rule[]): string[] {
  const all = new Set<string>();
  for (const { apiGroups, resources, verbs, resourceNames } of rules)
    for (const group of apiGroups)
      for (const resource of resources)
        for (const verb of verbs)
          for (const name of resourceNames ?? [undefined]) all.add(grant(group, resource, verb, name));
  return [...all].sort();
}

export function grant(group: string, resource: string, verb: string, name?: string): string {
  return `${group}/${resource}${name === undefined ? '' : `[${name}]`}:${verb}`;
}
