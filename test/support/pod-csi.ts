// CSI clients for plugins running in pods: their sockets found on the node through the container's
// mounts, shaped as the kubelet flow (test/e2e/kubelet-flow.ts) expects its endpoints.
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { CsiClients, callUnary, csiClients } from '../../src/csi/proto';
import { PluginOptions, parsePluginOptions } from '../../src/cli/plugin';
import { CsiEndpoints } from '../e2e/kubelet-flow';
import { Reply, ServiceName } from './csi-harness';
import { OciSpec } from './pod-oci-spec';
import { RuncContainer } from './pod-runtime';

/** Where a path inside the container is on the node: through the deepest bind mount holding it. */
export function nodePathOf(spec: OciSpec, containerPath: string): string {
  const holders = spec.mounts.filter(
    ({ type, destination }) =>
      type === 'bind' && (containerPath === destination || containerPath.startsWith(`${destination}/`)),
  );
  const holder = holders.sort((a, b) => b.destination.length - a.destination.length)[0];
  if (!holder) throw new Error(`${containerPath} is on the container's own root filesystem`);
  return holder.source + containerPath.slice(holder.destination.length);
}

/** A plugin container's options as it parsed them (its process arguments after `plugin`). */
export function pluginOptionsOf(spec: OciSpec): PluginOptions {
  const args = spec.process.args;
  const at = args.indexOf('plugin');
  if (at < 0) throw new Error(`not a plugin container: ${args.join(' ')}`);
  return parsePluginOptions(args.slice(at + 1));
}

/** The node path of a plugin container's CSI socket. */
export function socketOf(spec: OciSpec): string {
  const endpoint = pluginOptionsOf(spec).endpoint;
  if (!endpoint.startsWith('unix://')) throw new Error(`endpoint ${endpoint} is not a unix socket`);
  return nodePathOf(spec, endpoint.slice('unix://'.length));
}

/** Waits for a started plugin container's socket; throws with its log if it stops first. */
export async function waitForSocket(container: RuncContainer, timeoutMs: number): Promise<string> {
  const socket = socketOf(container.spec);
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(socket)) {
    if ((await container.status()) !== 'running')
      throw new Error(`${container.name} stopped before its socket ${socket} appeared:\n${container.log()}`);
    if (Date.now() > deadline) throw new Error(`${container.name}: no socket ${socket} in ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return socket;
}

/**
 * The socket as a sidecar of the same pod reaches it (its /csi is the same emptyDir or host
 * directory): through the container's root. Node paths of an emptyDir can be longer than a unix
 * socket address may be (108 bytes), and the sidecars never use them.
 */
export async function sidecarSocketOf(container: RuncContainer): Promise<string> {
  const endpoint = pluginOptionsOf(container.spec).endpoint;
  return `/proc/${await container.pid()}/root${endpoint.slice('unix://'.length)}`;
}

/**
 * Controller calls to the controller pod's socket as its sidecars reach it, Identity and Node calls
 * to the node pod's socket as kubelet reaches it (the node path the registrar registers); `root`
 * puts the kubelet flow's directories in `kubeletDir`.
 */
export class PodCsi implements CsiEndpoints {
  readonly root: string;
  readonly options: PluginOptions;
  private node: CsiClients;

  private constructor(
    nodeContainer: RuncContainer,
    private readonly controller: CsiClients,
    kubeletDir: string,
  ) {
    if (!kubeletDir.endsWith('/kubelet'))
      throw new Error(`kubeletDir ${kubeletDir} does not end in /kubelet`);
    this.root = dirname(kubeletDir);
    this.options = pluginOptionsOf(nodeContainer.spec);
    this.node = csiClients(`unix://${socketOf(nodeContainer.spec)}`);
  }

  static async connect(
    nodeContainer: RuncContainer,
    controllerContainer: RuncContainer,
    kubeletDir: string,
  ): Promise<PodCsi> {
    const controller = csiClients(`unix://${await sidecarSocketOf(controllerContainer)}`);
    return new PodCsi(nodeContainer, controller, kubeletDir);
  }

  /** A new channel to the node plugin (after its container was started again). */
  reconnectNode(nodeContainer: RuncContainer): void {
    this.node.identity.close();
    this.node = csiClients(`unix://${socketOf(nodeContainer.spec)}`);
  }

  call(service: ServiceName, method: string, request: object = {}): Promise<Reply> {
    const clients = service === 'controller' ? this.controller : this.node;
    return callUnary(clients[service], method, request, { deadline: Date.now() + 600_000 });
  }

  close(): void {
    this.node.identity.close();
    this.controller.identity.close();
  }
}
