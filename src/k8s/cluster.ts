import { KubeConfig } from '@kubernetes/client-node';
import { VolumeRealizer } from '../csi/realizer';
import type { ControllerInventory } from '../metrics/inventory';
import { ImageDirectory } from '../storage/images';
import { CountedEvents } from './counted-events';
import { EventRecorder, InvolvedObject } from './events';
import { CustomResource } from './custom-resource';
import { kubeInventory } from './kube-inventory';
import { KubePlacement } from './kube-placement';
import { KubeRealizer } from './kube-realizer';
import { KubeStore } from './kube-store';
import { NodeAgent } from './node-agent';
import { NodeCapacity } from './node-capacity';
import { ReadinessEvents } from './readiness-events';
import { SNAPSHOTS, SnapshotObject, VOLUMES, VolumeObject } from './resources';

export interface ClusterOptions {
  config: KubeConfig;
  /** The driver's namespace: where the capacity ConfigMap lives. */
  namespace: string;
  /** Names this process in Events (its node id). */
  instance: string;
  waitTimeoutMs?: number;
  capacityIntervalMs?: number;
  retryMs?: number;
}

/** The parts of cluster mode (--store kubernetes), all talking to one API server. */
export class Cluster {
  readonly volumes: CustomResource<VolumeObject>;
  readonly snapshots: CustomResource<SnapshotObject>;
  readonly store: KubeStore;
  private readonly capacity: NodeCapacity;
  private readonly capacityIntervalMs: number;
  private readonly events: EventRecorder;
  /** Events on claims and pods; one instance so that each object's series of one reason is counted once. */
  readonly countedEvents: CountedEvents;

  constructor(private readonly options: ClusterOptions) {
    this.volumes = new CustomResource(options.config, VOLUMES);
    this.snapshots = new CustomResource(options.config, SNAPSHOTS);
    this.store = new KubeStore(this.volumes, this.snapshots);
    this.capacityIntervalMs = options.capacityIntervalMs ?? 30_000;
    this.events = new EventRecorder(options.config, options.instance);
    this.countedEvents = new CountedEvents(this.events);
    // Three missed reports: the agent is gone.
    this.capacity = new NodeCapacity(options.config, options.namespace, 3 * this.capacityIntervalMs);
  }

  /** In-cluster service account, or KUBECONFIG / ~/.kube/config. */
  static fromDefaultConfig(namespace: string, instance: string): Cluster {
    const config = new KubeConfig();
    config.loadFromDefault();
    return new Cluster({ config, namespace, instance });
  }

  realizer(): KubeRealizer {
    return new KubeRealizer({
      volumes: this.volumes,
      snapshots: this.snapshots,
      events: this.countedEvents,
      timeoutMs: this.options.waitTimeoutMs ?? 60_000,
    });
  }

  placement(): KubePlacement {
    return new KubePlacement(this.capacity);
  }

  /** The volumes and snapshots with their phases, for the controller's metrics. */
  inventory(): ControllerInventory {
    return kubeInventory(this.volumes, this.snapshots);
  }

  /** Events on this plugin's own Pod about its readiness. */
  readinessEvents(pod: Pick<InvolvedObject, 'name' | 'uid'>): ReadinessEvents {
    return new ReadinessEvents(this.events, { kind: 'Pod', namespace: this.options.namespace, ...pod });
  }

  nodeAgent(nodeId: string, images: ImageDirectory, realizer: VolumeRealizer): NodeAgent {
    return new NodeAgent({
      nodeId,
      volumes: this.volumes,
      snapshots: this.snapshots,
      images,
      realizer,
      capacity: this.capacity,
      capacityIntervalMs: this.capacityIntervalMs,
      retryMs: this.options.retryMs ?? 10_000,
    });
  }
}
