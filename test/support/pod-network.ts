// The node's pod network, as a CNI bridge-less plugin would make it: each pod without hostNetwork
// gets a network namespace of its own (pinned under /run/netns, as CRI runtimes pin the sandbox's)
// with one end of a veth pair as eth0 and a default route to the node; the other end stays on the
// node. The cluster's service address (the kubernetes Service's ClusterIP) is a local address of
// the node, so host-network pods and pods in their own namespace reach the API server alike.
import { execFileSync } from 'node:child_process';

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] });
}

/** The addresses of the test's pod network: 10.244.<n>.0/24 per pod (n from 1). */
const POD_SUBNET = '10.244';

export class PodNetwork {
  private next = 1;
  private constructor(readonly serviceIP: string) {}

  /** Adds `serviceIP`/32 to the node's loopback device. */
  static setUp(serviceIP: string): PodNetwork {
    ip('link', 'set', 'lo', 'up');
    ip('addr', 'add', `${serviceIP}/32`, 'dev', 'lo');
    return new PodNetwork(serviceIP);
  }

  /** A network namespace for one pod; `remove` deletes it and its veth pair. */
  addPod(name: string): { netns: string; podIP: string; remove: () => void } {
    const index = this.next++;
    if (index > 254) throw new Error('out of pod subnets');
    const netnsName = `pod-${name}`.slice(0, 60);
    const hostSide = `vcsi${index}`;
    const gateway = `${POD_SUBNET}.${index}.1`;
    const podIP = `${POD_SUBNET}.${index}.2`;
    ip('netns', 'add', netnsName);
    try {
      ip('link', 'add', hostSide, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netnsName);
      ip('addr', 'add', `${gateway}/24`, 'dev', hostSide);
      ip('link', 'set', hostSide, 'up');
      ip('-n', netnsName, 'link', 'set', 'lo', 'up');
      ip('-n', netnsName, 'addr', 'add', `${podIP}/24`, 'dev', 'eth0');
      ip('-n', netnsName, 'link', 'set', 'eth0', 'up');
      ip('-n', netnsName, 'route', 'add', 'default', 'via', gateway);
    } catch (error) {
      ip('netns', 'del', netnsName);
      throw error;
    }
    return { netns: `/run/netns/${netnsName}`, podIP, remove: () => ip('netns', 'del', netnsName) };
  }

  tearDown(): void {
    ip('addr', 'del', `${this.serviceIP}/32`, 'dev', 'lo');
  }
}
