// What kubelet does with a container's probes, against a container run by pod-runtime.ts: exec
// probes through `runc exec`, httpGet and tcpSocket probes from the node's network namespace to the
// pod's address (or the probe's host). And what a rolling update does with a pod's ports: a surge
// pod on host network beside the old one cannot bind the same ones.
import { request } from 'node:http';
import { connect } from 'node:net';
import { KubeObject } from './chart';
import { RuncContainer } from './pod-runtime';
import {
  Fields,
  fieldsOf,
  listOf,
  numberOf,
  onlyKnown,
  optionalFields,
  stringOf,
  stringsOf,
} from './spec-fields';

export type ProbeKind = 'startupProbe' | 'readinessProbe' | 'livenessProbe';
export const PROBE_KINDS: ProbeKind[] = ['startupProbe', 'readinessProbe', 'livenessProbe'];

const PROBE_FIELDS = [
  'exec',
  'httpGet',
  'tcpSocket',
  'initialDelaySeconds',
  'periodSeconds',
  'timeoutSeconds',
  'failureThreshold',
  'successThreshold',
];

export interface ProbeResult {
  ok: boolean;
  /** What was probed and how it answered. */
  detail: string;
}

/** Runs one probe of `container` once, as kubelet's prober would. */
export async function probeOnce(
  kind: ProbeKind,
  spec: Fields,
  container: RuncContainer,
  podIP: string,
): Promise<ProbeResult> {
  const where = `${kind} of ${container.name}`;
  const probe = fieldsOf(spec[kind], where);
  onlyKnown(probe, PROBE_FIELDS, where);
  const timeoutMs = (numberOf(probe.timeoutSeconds, `${where}.timeoutSeconds`) ?? 1) * 1000;
  if (probe.exec !== undefined) {
    const exec = fieldsOf(probe.exec, `${where}.exec`);
    onlyKnown(exec, ['command'], `${where}.exec`);
    const command = stringsOf(exec.command, `${where}.exec.command`) ?? [];
    const result = await container.exec(command, Math.max(timeoutMs, 60_000));
    return {
      ok: result.code === 0,
      detail: `exec ${command.join(' ')}: exit ${result.code} ${result.stdout}${result.stderr}`,
    };
  }
  if (probe.httpGet !== undefined) {
    const http = fieldsOf(probe.httpGet, `${where}.httpGet`);
    onlyKnown(http, ['host', 'path', 'port', 'scheme'], `${where}.httpGet`);
    if ((stringOf(http.scheme, `${where}.httpGet.scheme`) ?? 'HTTP') !== 'HTTP')
      throw new Error(`${where}: only HTTP probes are supported`);
    const host = stringOf(http.host, `${where}.httpGet.host`) ?? podIP;
    const port = resolvePort(spec, http.port, where);
    const path = stringOf(http.path, `${where}.httpGet.path`) ?? '/';
    const url = `http://${host}:${port}${path}`;
    return httpGet(url, timeoutMs);
  }
  if (probe.tcpSocket !== undefined) {
    const tcp = fieldsOf(probe.tcpSocket, `${where}.tcpSocket`);
    onlyKnown(tcp, ['host', 'port'], `${where}.tcpSocket`);
    const host = stringOf(tcp.host, `${where}.tcpSocket.host`) ?? podIP;
    return tcpConnect(host, resolvePort(spec, tcp.port, where), timeoutMs);
  }
  throw new Error(`${where}: no exec, httpGet or tcpSocket handler`);
}

/**
 * Probes until the probe succeeds (kubelet's startup probe: failureThreshold × periodSeconds, but
 * never less than `minimumMs`: this machine is slower than a node), or throws with the last answer.
 */
export async function waitForProbe(
  kind: ProbeKind,
  spec: Fields,
  container: RuncContainer,
  podIP: string,
  minimumMs: number,
): Promise<ProbeResult> {
  const probe = fieldsOf(spec[kind], `${kind} of ${container.name}`);
  const period = (numberOf(probe.periodSeconds, 'periodSeconds') ?? 10) * 1000;
  const failures = numberOf(probe.failureThreshold, 'failureThreshold') ?? 3;
  const deadline = Date.now() + Math.max(minimumMs, period * failures);
  for (;;) {
    const result = await probeOnce(kind, spec, container, podIP);
    if (result.ok) return result;
    if ((await container.status()) !== 'running')
      throw new Error(
        `${kind} of ${container.name}: the container stopped; last probe: ${result.detail}\n${container.log()}`,
      );
    if (Date.now() > deadline)
      throw new Error(`${kind} of ${container.name} never passed; last: ${result.detail}`);
    await new Promise((resolve) => setTimeout(resolve, Math.min(period, 2000)));
  }
}

function resolvePort(spec: Fields, port: unknown, where: string): number {
  if (typeof port === 'number') return port;
  const named = listOf(spec.ports, `${where} ports`).find((entry) => entry.name === port);
  const number = numberOf(named?.containerPort, `${where} port ${String(port)}`);
  if (number === undefined) throw new Error(`${where}: no container port named ${String(port)}`);
  return number;
}

function httpGet(url: string, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const call = request(url, { timeout: timeoutMs }, (response) => {
      let body = '';
      response.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      response.on('end', () => {
        const code = response.statusCode ?? 0;
        resolve({ ok: code >= 200 && code < 400, detail: `GET ${url}: ${code} ${body.trim()}` });
      });
    });
    call.on('timeout', () => call.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    call.on('error', (error) => resolve({ ok: false, detail: `GET ${url}: ${error.message}` }));
    call.end();
  });
}

function tcpConnect(host: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: timeoutMs }, () => {
      socket.destroy();
      resolve({ ok: true, detail: `connect ${host}:${port}: connected` });
    });
    socket.on('timeout', () => socket.destroy(new Error('timeout')));
    socket.on('error', (error) =>
      resolve({ ok: false, detail: `connect ${host}:${port}: ${error.message}` }),
    );
  });
}

/**
 * The ports a workload's pods take on their node when they run on host network: every
 * containerPort and every probe port. A rolling update that starts a new pod beside the old one
 * on the same node (a DaemonSet's maxSurge, a Deployment's surge) cannot bind them there: each such
 * port is returned with a message saying so. Empty when the pods have their own network or no surge.
 */
export function surgePortClashes(workload: KubeObject): string[] {
  const spec = fieldsOf(fieldsOf(workload.spec, `${workload.kind}.spec`).template, 'template');
  const podSpec = fieldsOf(spec.spec, 'template.spec');
  if (podSpec.hostNetwork !== true) return [];
  const strategy = optionalFields(workload.spec.updateStrategy ?? workload.spec.strategy, 'strategy') ?? {};
  const rolling = optionalFields(strategy.rollingUpdate, 'rollingUpdate') ?? {};
  const surge = rolling.maxSurge ?? (workload.kind === 'Deployment' ? '25%' : 0);
  const recreate = strategy.type === 'Recreate' || strategy.type === 'OnDelete';
  if (recreate || surge === 0 || surge === '0' || surge === '0%') return [];
  const clashes: string[] = [];
  for (const container of listOf(podSpec.containers, 'containers')) {
    const ports = new Set<number>();
    for (const port of listOf(container.ports, 'ports')) ports.add(Number(port.containerPort));
    for (const kind of PROBE_KINDS) {
      const probe = optionalFields(container[kind], kind);
      const handler = optionalFields(probe?.httpGet ?? probe?.tcpSocket, kind);
      if (handler) ports.add(resolvePort(container, handler.port, `${kind} of ${String(container.name)}`));
    }
    for (const port of ports)
      clashes.push(
        `${workload.kind} ${workload.metadata.name}, container ${String(container.name)}: port ${port} is a node port ` +
          `(hostNetwork), and a rolling update with maxSurge ${String(surge)} starts the new pod beside the old ` +
          `one on the same node: it cannot bind ${port} while the old pod holds it`,
      );
  }
  return clashes;
}
