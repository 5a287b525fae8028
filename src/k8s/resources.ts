import { createHash } from 'node:crypto';
import { storedParameters } from '../csi/parameters';
import { SnapshotRecord, VolumeRecord } from '../csi/store';

/*
 * The csi.vduse.dev/v1alpha1 custom resources (charts/vduse-csi/crds). Both are cluster-scoped and
 * named by their id. The controller writes metadata and spec; the node agent of spec.nodeId writes
 * status and removes the finalizer once the image is gone.
 */
export const GROUP = 'csi.vduse.dev';
export const VERSION = 'v1alpha1';
export const FINALIZER = 'csi.vduse.dev/image';
/** Label carrying the node (see nodeLabel): the node agent selects its objects with it. */
export const NODE_LABEL = 'csi.vduse.dev/node';

export interface ResourceKind {
  kind: string;
  plural: string;
}
export const VOLUMES: ResourceKind = { kind: 'VduseVolume', plural: 'vdusevolumes' };
export const SNAPSHOTS: ResourceKind = { kind: 'VduseSnapshot', plural: 'vdusesnapshots' };

export interface ObjectMeta {
  name: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  finalizers?: string[];
  labels?: Record<string, string>;
}

export interface KubeObject<Spec = unknown, Status = unknown> {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec: Spec;
  status?: Status;
}

export type Phase = 'Pending' | 'Creating' | 'Ready' | 'Resizing' | 'Deleting' | 'Failed';

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  observedGeneration?: number;
  lastTransitionTime: string;
  reason: string;
  message: string;
}

export interface VolumeSpec {
  name: string;
  capacityBytes: number;
  nodeId: string;
  /** overcommitRatio and provisioning are missing from objects written before they existed. */
  parameters: Partial<VolumeRecord['parameters']>;
  source?: { kind: 'snapshot' | 'volume'; id: string };
  pvc?: { name: string; namespace: string; volumeName?: string };
}

export interface VolumeStatus {
  phase?: Phase;
  capacityBytes?: number;
  device?: string;
  message?: string;
  observedGeneration?: number;
  conditions?: Condition[];
}

export interface SnapshotSpec {
  name: string;
  sourceVolumeId: string;
  nodeId: string;
}

export interface SnapshotStatus {
  phase?: Phase;
  sizeBytes?: number;
  readyToUse?: boolean;
  creationTime?: string;
  message?: string;
}

export type VolumeObject = KubeObject<VolumeSpec, VolumeStatus>;
export type SnapshotObject = KubeObject<SnapshotSpec, SnapshotStatus>;

/**
 * A label value for a node id. Node ids allow 128 characters and may end in '.', '-' or '_',
 * label values do not: such ids are labelled by a digest instead (the agent still checks spec.nodeId).
 */
export function nodeLabel(nodeId: string): string {
  if (/^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/.test(nodeId)) return nodeId;
  return `sha256-${createHash('sha256').update(nodeId).digest('hex').slice(0, 40)}`;
}

function metadataFor(id: string, nodeId: string): ObjectMeta {
  return { name: id, finalizers: [FINALIZER], labels: { [NODE_LABEL]: nodeLabel(nodeId) } };
}

export function volumeObject(record: VolumeRecord): VolumeObject {
  return {
    apiVersion: `${GROUP}/${VERSION}`,
    kind: VOLUMES.kind,
    metadata: metadataFor(record.id, record.nodeId),
    spec: volumeSpec(record),
  };
}

function volumeSpec(record: VolumeRecord): VolumeSpec {
  return {
    name: record.name,
    capacityBytes: record.capacityBytes,
    nodeId: record.nodeId,
    parameters: { ...record.parameters },
    ...(record.source ? { source: { ...record.source } } : {}),
    ...(record.claim ? { pvc: { ...record.claim } } : {}),
  };
}

export function volumeRecord(object: VolumeObject): VolumeRecord {
  const spec = object.spec;
  return {
    id: object.metadata.name,
    name: spec.name,
    capacityBytes: spec.capacityBytes,
    parameters: storedParameters(spec.parameters),
    source: spec.source ? { ...spec.source } : null,
    nodeId: spec.nodeId,
    createdAtMs: timestampMs(object.metadata.creationTimestamp),
    claim: spec.pvc ? { ...spec.pvc } : null,
  };
}

export function snapshotObject(record: SnapshotRecord): SnapshotObject {
  return {
    apiVersion: `${GROUP}/${VERSION}`,
    kind: SNAPSHOTS.kind,
    metadata: metadataFor(record.id, record.nodeId),
    spec: { name: record.name, sourceVolumeId: record.sourceVolumeId, nodeId: record.nodeId },
  };
}

/** Size and creation time are the node agent's (status), known once the copy is made. */
export function snapshotRecord(object: SnapshotObject): SnapshotRecord {
  return {
    id: object.metadata.name,
    name: object.spec.name,
    sourceVolumeId: object.spec.sourceVolumeId,
    nodeId: object.spec.nodeId,
    sizeBytes: object.status?.sizeBytes ?? 0,
    createdAtMs: timestampMs(object.status?.creationTime ?? object.metadata.creationTimestamp),
  };
}

export function isDeleting(object: KubeObject): boolean {
  return object.metadata.deletionTimestamp !== undefined;
}

function timestampMs(timestamp: string | undefined): number {
  const ms = timestamp ? Date.parse(timestamp) : NaN;
  return Number.isNaN(ms) ? 0 : ms;
}
