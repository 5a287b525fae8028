import { KubeConfig } from '@kubernetes/client-node';
import { randomUUID } from 'node:crypto';
import { IncomingMessage, Server, ServerResponse, createServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { AddressInfo } from 'node:net';
import { CustomResourceSchema, chartCustomResources } from './chart-crds';
import { invalidStatus } from './field-errors';

/*
 * An in-process stand-in for the Kubernetes API server, speaking the REST semantics the driver's
 * client relies on (no real API server is available to the tests):
 * - GET, LIST (labelSelector and fieldSelector, equality only), POST, PUT, merge PATCH, DELETE;
 * - resourceVersion: one monotonic counter; a PUT with a stale one is 409 Conflict, a custom
 *   resource PUT without one is 422;
 * - resources with a status subresource: the main resource ignores status changes, /status ignores
 *   everything else; generation starts at 1 and grows with each spec change and when deletion starts;
 * - custom resources as the chart's CRDs define them (chart-crds.ts), in their served versions
 *   only: every write (create, update, patch, /status, and modify()) is pruned of the fields the
 *   schema does not know, with a Warning header naming them as the API server sends it, and
 *   refused when invalid (schema and x-kubernetes-validations rules) with the API server's 422
 *   Invalid Status, one cause per field; `writes` keeps what each client write sent and what was kept;
 * - finalizers: DELETE sets deletionTimestamp, the object goes once its finalizers are removed;
 * - WATCH (?watch=true&resourceVersion=N): ADDED/MODIFIED/DELETED as newline-delimited JSON, from
 *   the retained history after N; an N older than the history (see compact()) gets an ERROR event
 *   with a 410 Gone Status, as the watch cache sends it, and the stream ends;
 * - failures on demand (failNext): a 5xx answer or a dropped connection;
 * - plain HTTP on 127.0.0.1 by default; HTTPS with a given key and certificate on a given address
 *   when clients must reach it as pods do (in-cluster configuration speaks https only).
 */

/** Where and how the fake listens (plain HTTP on 127.0.0.1 unless told otherwise). */
export interface FakeKubeApiOptions {
  /** The address to listen on (127.0.0.1 by default). */
  host?: string;
  /** Serve HTTPS with this PEM key and certificate instead of HTTP. */
  tls?: { key: string; cert: string };
}

type Json = Record<string, unknown>;
interface Meta {
  name: string;
  namespace?: string;
  resourceVersion: string;
  generation?: number;
  deletionTimestamp?: string;
  finalizers?: string[];
  labels?: Record<string, string>;
  [key: string]: unknown;
}
interface StoredObject extends Json {
  metadata: Meta;
}

interface ResourceType {
  kind: string;
  namespaced: boolean;
  statusSubresource: boolean;
  /** A custom resource's schema, of the version asked for. */
  schema?: CustomResourceSchema;
}

/** The built-in resources the fake serves: /resource → how. */
const BUILT_IN: Record<string, ResourceType> = {
  '/configmaps': { kind: 'ConfigMap', namespaced: true, statusSubresource: false },
  '/events': { kind: 'Event', namespaced: true, statusSubresource: false },
  '/persistentvolumeclaims': { kind: 'PersistentVolumeClaim', namespaced: true, statusSubresource: true },
};

const CUSTOM = new Map(chartCustomResources().map((type) => [`${type.group}/${type.plural}`, type]));

/** How the fake serves group/resource in `version`; undefined when it does not. */
function resourceType(resource: string, version: string): ResourceType | undefined {
  const custom = CUSTOM.get(resource);
  if (!custom) return BUILT_IN[resource];
  const served = custom.versions.get(version);
  return served && { kind: custom.kind, namespaced: custom.namespaced, ...served };
}

interface Target {
  resource: string;
  type: ResourceType;
  apiVersion: string;
  namespace: string | undefined;
  name: string | undefined;
  subresource: string | undefined;
}

/** A client's write as it was sent (a patch applied to the object), and what became of it. */
export interface RecordedWrite {
  resource: string;
  subresource: string | undefined;
  sent: Json;
  /** The object as it was kept, unless the write was refused as invalid. */
  stored?: StoredObject;
  /** The 422 Status of a write refused as invalid. */
  invalid?: Json;
}

interface Answer {
  code: number;
  body: unknown;
  /** Warning headers' texts. */
  warnings?: string[];
}

interface WatchEvent {
  resourceVersion: number;
  resource: string;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: StoredObject;
}

/** Requests to fail: see FakeKubeApi.failNext. */
export interface FailureRule {
  method: string;
  path: RegExp;
  /** Only requests whose body matches, when given. */
  body?: RegExp;
  /** How many matching requests fail (1 by default). */
  count?: number;
  /** An HTTP status (503 by default), or the connection closed without an answer. */
  answer?: number | 'disconnect';
}

interface Watcher {
  resource: string;
  matches: (object: StoredObject) => boolean;
  response: ServerResponse;
}

class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    /** The Status to answer, when more than code, reason and message. */
    readonly status?: Json,
  ) {
    super(message);
  }
}

export class FakeKubeApi {
  private version = 0;
  private readonly objects = new Map<string, Map<string, StoredObject>>();
  private history: WatchEvent[] = [];
  private readonly watchers = new Set<Watcher>();
  private heldWatches: (() => void)[] | null = null;
  private readonly failures: (FailureRule & { count: number })[] = [];
  /** Requests served, by method (tests use it to tell watching from polling). */
  readonly requests: string[] = [];
  /** Every client write of an object's content (create, update, patch), in order; not those refused with 404 or 409. */
  readonly writes: RecordedWrite[] = [];

  private constructor(
    private readonly server: Server,
    private readonly scheme: 'http' | 'https',
  ) {}

  static async start(options: FakeKubeApiOptions = {}): Promise<FakeKubeApi> {
    const server = options.tls ? createHttpsServer(options.tls) : createServer();
    const api = new FakeKubeApi(server, options.tls ? 'https' : 'http');
    server.on('request', (request, response) => void api.handle(request, response));
    await new Promise<void>((resolve) => server.listen(0, options.host ?? '127.0.0.1', resolve));
    return api;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  get url(): string {
    const { address } = this.server.address() as AddressInfo;
    return `${this.scheme}://${address.includes(':') ? `[${address}]` : address}:${this.port}`;
  }

  /** A client configuration pointing at this server. */
  kubeConfig(): KubeConfig {
    const config = new KubeConfig();
    config.loadFromOptions({
      clusters: [{ name: 'fake', server: this.url, skipTLSVerify: true }],
      users: [{ name: 'tester', token: 'fake-token' }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'tester' }],
      currentContext: 'fake',
    });
    return config;
  }

  /** A copy of one stored object, or undefined. */
  object(resource: string, name: string, namespace?: string): StoredObject | undefined {
    const object = this.objects.get(resource)?.get(key(namespace, name));
    return object && structuredClone(object);
  }

  list(resource: string): StoredObject[] {
    return [...(this.objects.get(resource)?.values() ?? [])].map((object) => structuredClone(object));
  }

  /**
   * A write by another client, straight into the store (a new resourceVersion and a MODIFIED event),
   * status included; pruned and validated as any write. Throws the Status of an invalid one.
   */
  modify(resource: string, name: string, change: (object: StoredObject) => void, namespace?: string): void {
    const current = this.object(resource, name, namespace);
    if (!current) throw new Error(`no ${resource} ${name}`);
    const object = structuredClone(current);
    change(object);
    const apiVersion = String(object.apiVersion);
    const type = resourceType(resource, apiVersion.split('/').pop()!)!;
    const target = { resource, type, apiVersion, namespace, name, subresource: undefined };
    type.schema?.prune(object);
    this.validate(target, object, current);
    this.store(target, object, 'MODIFIED');
  }

  /** Forgets the event history, as etcd compaction does: older watches get 410 Gone. */
  compact(): void {
    this.history = [];
  }

  /** Ends every watch stream, as an API server restart or a load balancer timeout does. */
  closeWatches(): void {
    for (const watcher of this.watchers) watcher.response.end();
    this.watchers.clear();
  }

  /** New watch requests wait (unanswered) until resumeWatches(): time for changes to happen meanwhile. */
  holdWatches(): void {
    this.heldWatches ??= [];
  }

  resumeWatches(): void {
    const held = this.heldWatches ?? [];
    this.heldWatches = null;
    for (const serve of held) serve();
  }

  /** The next requests matching `rule` fail; rules are met in the order they were given. */
  failNext(rule: FailureRule): void {
    this.failures.push({ ...rule, count: rule.count ?? 1 });
  }

  /** How many failures failNext asked for are still to come. */
  get pendingFailures(): number {
    return this.failures.reduce((sum, rule) => sum + rule.count, 0);
  }

  async stop(): Promise<void> {
    this.resumeWatches();
    this.closeWatches();
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', this.url);
    this.requests.push(`${request.method} ${url.pathname}${url.searchParams.has('watch') ? ' watch' : ''}`);
    try {
      const target = parseTarget(url.pathname);
      const body = await readBody(request);
      if (this.failed(request, url.pathname, body, response)) return;
      const query = url.searchParams;
      if (request.method === 'GET' && !target.name && ['1', 'true'].includes(query.get('watch') ?? '')) {
        if (this.heldWatches) this.heldWatches.push(() => this.watch(target, query, response));
        else this.watch(target, query, response);
        return;
      }
      const result = this.dispatch(
        request.method ?? 'GET',
        request.headers['content-type'],
        target,
        query,
        body,
      );
      send(response, result.code, result.body, result.warnings);
    } catch (error) {
      const failure = error instanceof ApiError ? error : new ApiError(500, 'InternalError', String(error));
      send(
        response,
        failure.code,
        failure.status ?? statusObject(failure.code, failure.reason, failure.message),
      );
    }
  }

  /** Fails the request when a failNext rule matches it; whether it did. */
  private failed(
    request: IncomingMessage,
    path: string,
    body: Json | undefined,
    response: ServerResponse,
  ): boolean {
    const index = this.failures.findIndex(
      (rule) =>
        rule.method === request.method &&
        rule.path.test(path) &&
        (!rule.body || rule.body.test(JSON.stringify(body ?? null))),
    );
    const rule = this.failures[index];
    if (!rule) return false;
    if (--rule.count === 0) this.failures.splice(index, 1);
    if (rule.answer === 'disconnect') request.socket.destroy();
    else {
      const code = rule.answer ?? 503;
      const reason = code === 503 ? 'ServiceUnavailable' : 'InternalError';
      send(response, code, statusObject(code, reason, 'failing on purpose (failNext)'));
    }
    return true;
  }

  private dispatch(
    method: string,
    contentType: string | undefined,
    target: Target,
    query: URLSearchParams,
    body: Json | undefined,
  ): Answer {
    const { name } = target;
    if (method === 'GET' && !name) return { code: 200, body: this.listBody(target, query) };
    if (method === 'POST' && !name)
      return this.written(target, requireBody(body), (object) => this.create(target, object), 201);
    if (!name) throw new ApiError(405, 'MethodNotAllowed', `${method} on a collection`);
    if (method === 'GET') return { code: 200, body: this.require(target) };
    if (method === 'PUT')
      return this.written(target, requireBody(body), (object) => this.replace(target, object));
    if (method === 'PATCH') {
      if (!contentType?.startsWith('application/merge-patch+json'))
        throw new ApiError(415, 'UnsupportedMediaType', `patch type ${contentType} is not supported here`);
      const patched = mergePatch(this.require(target), requireBody(body)) as StoredObject;
      patched.metadata.resourceVersion = this.require(target).metadata.resourceVersion;
      return this.written(target, patched, (object) => this.replace(target, object));
    }
    if (method === 'DELETE') return { code: 200, body: this.delete(target) };
    throw new ApiError(405, 'MethodNotAllowed', method);
  }

  /**
   * A client's write of `sent`: pruned as the API server decodes it (a Warning for each unknown
   * field), then written, and recorded.
   */
  private written(target: Target, sent: Json, write: (object: Json) => StoredObject, code = 200): Answer {
    const object = structuredClone(sent);
    const unknown = target.type.schema?.prune(object) ?? [];
    const recorded = { resource: target.resource, subresource: target.subresource, sent };
    let stored: StoredObject;
    try {
      stored = write(object);
    } catch (error) {
      if (error instanceof ApiError && error.code === 422)
        this.writes.push({
          ...recorded,
          invalid: error.status ?? statusObject(422, error.reason, error.message),
        });
      throw error;
    }
    this.writes.push({ ...recorded, stored });
    return { code, body: stored, warnings: unknown.map((path) => `unknown field "${path}"`) };
  }

  /** Refuses to store an invalid custom resource as the API server does: 422 Invalid, one cause per field. */
  private validate(target: Target, object: StoredObject, old: StoredObject | null): void {
    const errors = target.type.schema?.validate(object, old) ?? [];
    if (errors.length === 0) return;
    const status = invalidStatus(
      target.resource.split('/')[0]!,
      target.type.kind,
      object.metadata.name,
      errors,
    );
    throw new ApiError(422, 'Invalid', String(status.message), status);
  }

  private collection(resource: string): Map<string, StoredObject> {
    let collection = this.objects.get(resource);
    if (!collection) this.objects.set(resource, (collection = new Map()));
    return collection;
  }

  private require(target: Target): StoredObject {
    const object = this.collection(target.resource).get(key(target.namespace, target.name!));
    if (!object) throw new ApiError(404, 'NotFound', `${target.resource} "${target.name}" not found`);
    return structuredClone(object);
  }

  private listBody(target: Target, query: URLSearchParams): Json {
    const matches = selectorMatcher(query, target.namespace);
    return {
      apiVersion: target.apiVersion,
      kind: `${target.type.kind}List`,
      metadata: { resourceVersion: String(this.version) },
      items: [...this.collection(target.resource).values()].filter(matches),
    };
  }

  private create(target: Target, body: Json): StoredObject {
    const object = structuredClone(body) as StoredObject;
    const metadata = object.metadata;
    if (!metadata?.name) throw new ApiError(422, 'Invalid', 'metadata.name is required');
    if (target.namespace) metadata.namespace = target.namespace;
    if (target.type.statusSubresource) {
      delete object.status;
      metadata.generation = 1;
    }
    this.validate(target, object, null);
    const collection = this.collection(target.resource);
    if (collection.has(key(target.namespace, metadata.name)))
      throw new ApiError(409, 'AlreadyExists', `${target.resource} "${metadata.name}" already exists`);
    Object.assign(metadata, { uid: randomUUID(), creationTimestamp: now() });
    delete metadata.deletionTimestamp;
    return this.store(target, object, 'ADDED');
  }

  private replace(target: Target, body: Json): StoredObject {
    const current = this.require(target);
    const incoming = structuredClone(body) as StoredObject;
    const version = incoming.metadata?.resourceVersion;
    if (!version && target.type.statusSubresource)
      throw new ApiError(422, 'Invalid', 'metadata.resourceVersion must be specified for an update');
    if (version && version !== current.metadata.resourceVersion)
      throw new ApiError(
        409,
        'Conflict',
        `the object has been modified; please apply your changes to the latest version`,
      );
    let next: StoredObject;
    if (target.subresource === 'status') {
      next = { ...current, status: incoming.status };
    } else if (target.type.statusSubresource) {
      // Identity, bookkeeping and deletion state are the server's; the rest of metadata the client's.
      const kept = ['uid', 'creationTimestamp', 'generation', 'deletionTimestamp', 'namespace', 'name'];
      next = { ...incoming, status: current.status, metadata: { ...incoming.metadata } };
      for (const field of kept) {
        if (current.metadata[field] === undefined) delete next.metadata[field];
        else next.metadata[field] = current.metadata[field];
      }
      if (JSON.stringify(incoming.spec) !== JSON.stringify(current.spec)) next.metadata.generation! += 1;
    } else {
      next = {
        ...incoming,
        metadata: { ...incoming.metadata, uid: current.metadata.uid, name: current.metadata.name },
      };
      if (target.namespace) next.metadata.namespace = target.namespace;
    }
    this.validate(target, next, current);
    if (next.metadata.deletionTimestamp && (next.metadata.finalizers ?? []).length === 0) {
      this.collection(target.resource).delete(key(target.namespace, target.name!));
      return this.store(target, next, 'DELETED', false);
    }
    return this.store(target, next, 'MODIFIED');
  }

  private delete(target: Target): StoredObject {
    const current = this.require(target);
    if ((current.metadata.finalizers ?? []).length === 0) {
      this.collection(target.resource).delete(key(target.namespace, target.name!));
      return this.store(target, current, 'DELETED', false);
    }
    if (current.metadata.deletionTimestamp) return current;
    current.metadata.deletionTimestamp = now();
    if (current.metadata.generation !== undefined) current.metadata.generation += 1;
    return this.store(target, current, 'MODIFIED');
  }

  /** Gives the object the next resourceVersion, keeps it (unless deleted), records and sends the event. */
  private store(target: Target, object: StoredObject, type: WatchEvent['type'], keep = true): StoredObject {
    this.version += 1;
    object.metadata.resourceVersion = String(this.version);
    object.apiVersion = target.apiVersion;
    object.kind = target.type.kind;
    if (keep) this.collection(target.resource).set(key(target.namespace, object.metadata.name), object);
    const event: WatchEvent = { resourceVersion: this.version, resource: target.resource, type, object };
    this.history.push(event);
    for (const watcher of this.watchers) this.deliver(watcher, event);
    return structuredClone(object);
  }

  private watch(target: Target, query: URLSearchParams, response: ServerResponse): void {
    const matches = selectorMatcher(query, target.namespace);
    const from = Number(query.get('resourceVersion') || '0');
    response.writeHead(200, { 'Content-Type': 'application/json' });
    const watcher: Watcher = { resource: target.resource, matches, response };
    if (from === 0) {
      for (const object of this.collection(target.resource).values())
        this.deliver(watcher, { resourceVersion: 0, resource: target.resource, type: 'ADDED', object });
    } else {
      const oldest = this.history[0]?.resourceVersion ?? this.version + 1;
      if (from < oldest - 1) {
        const gone = statusObject(410, 'Expired', `too old resource version: ${from} (${oldest - 1})`);
        response.end(`${JSON.stringify({ type: 'ERROR', object: gone })}\n`);
        return;
      }
      for (const event of this.history) if (event.resourceVersion > from) this.deliver(watcher, event);
    }
    this.watchers.add(watcher);
    response.on('close', () => this.watchers.delete(watcher));
  }

  private deliver(watcher: Watcher, event: WatchEvent): void {
    if (event.resource !== watcher.resource || !watcher.matches(event.object)) return;
    watcher.response.write(`${JSON.stringify({ type: event.type, object: event.object })}\n`);
  }
}

function parseTarget(path: string): Target {
  const parts = path.split('/').filter(Boolean);
  let group: string;
  let apiVersion: string;
  let rest: string[];
  if (parts[0] === 'api' && parts[1] === 'v1') {
    group = '';
    apiVersion = 'v1';
    rest = parts.slice(2);
  } else if (parts[0] === 'apis' && parts.length >= 3) {
    group = parts[1]!;
    apiVersion = `${parts[1]}/${parts[2]}`;
    rest = parts.slice(3);
  } else throw new ApiError(404, 'NotFound', `no such path ${path}`);
  let namespace: string | undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  const resource = `${group}/${rest[0]}`;
  const type = resourceType(resource, apiVersion.split('/').pop()!);
  if (!type || type.namespaced !== (namespace !== undefined) || rest.length > 3)
    throw new ApiError(404, 'NotFound', `the server could not find the requested resource (${path})`);
  const subresource = rest[2];
  if (subresource !== undefined && (subresource !== 'status' || !type.statusSubresource))
    throw new ApiError(404, 'NotFound', `no subresource ${subresource}`);
  return { resource, type, apiVersion, namespace, name: rest[1], subresource };
}

/** Equality-based label and field selectors: `a=b`, `a==b`, `a!=b`, `a`, `!a`, comma-separated. */
function selectorMatcher(
  query: URLSearchParams,
  namespace: string | undefined,
): (object: StoredObject) => boolean {
  const labels = parseSelector(query.get('labelSelector'));
  const fields = parseSelector(query.get('fieldSelector'));
  return (object) =>
    (namespace === undefined || object.metadata.namespace === namespace) &&
    labels.every((term) => term(object.metadata.labels?.[term.key])) &&
    fields.every((term) => term(fieldValue(object, term.key)));
}

type Term = ((value: string | undefined) => boolean) & { key: string };

function parseSelector(text: string | null): Term[] {
  if (!text) return [];
  return text.split(',').map((part) => {
    const match = /^(!?)([^!=]+)(?:(!=|==|=)(.*))?$/.exec(part.trim());
    if (!match) throw new ApiError(400, 'BadRequest', `unable to parse requirement: ${part}`);
    const [, negate, key, operator, wanted] = match as unknown as [string, string, string, string?, string?];
    const test = (value: string | undefined): boolean => {
      if (operator === undefined) return (value !== undefined) !== (negate === '!');
      return operator === '!=' ? value !== wanted : value === wanted;
    };
    return Object.assign(test, { key });
  });
}

function fieldValue(object: StoredObject, path: string): string | undefined {
  let value: unknown = object;
  for (const part of path.split('.')) value = (value as Json | undefined)?.[part];
  return value === undefined ? undefined : String(value);
}

/** RFC 7386 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const result: Json =
    target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Json) } : {};
  for (const [field, value] of Object.entries(patch as Json)) {
    if (value === null) delete result[field];
    else result[field] = mergePatch(result[field], value);
  }
  return result;
}

function statusObject(code: number, reason: string, message: string): Json {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

/** The answer, with a Warning header (code 299, as the API server sends them) per warning. */
function send(response: ServerResponse, code: number, body: unknown, warnings: string[] = []): void {
  const headers: Record<string, string | string[]> = { 'Content-Type': 'application/json' };
  if (warnings.length > 0) headers.Warning = warnings.map((text) => `299 - ${JSON.stringify(text)}`);
  response.writeHead(code, headers);
  response.end(JSON.stringify(body));
}

async function readBody(request: IncomingMessage): Promise<Json | undefined> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  if (chunks.length === 0) return undefined;
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text) return undefined;
  try {
    return JSON.parse(text) as Json;
  } catch {
    throw new ApiError(400, 'BadRequest', 'the body is not JSON');
  }
}

function requireBody(body: Json | undefined): Json {
  if (!body) throw new ApiError(400, 'BadRequest', 'a body is required');
  return body;
}

function key(namespace: string | undefined, name: string): string {
  return `${namespace ?? ''}/${name}`;
}

function now(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, 'Z');
}
