// An authorizing proxy in front of the fake Kubernetes API server: it holds the rules the chart
// grants one ServiceAccount and answers 403 to any request they do not allow, as the API server's
// RBAC authorizer would. It records what it refused and which grants the requests used, so a test
// can hold the chart's roles against what the code really does (chart-rbac.test.ts).
//
// RBAC as the API server applies it to resource requests: the verb from the method (GET of a
// collection is list, or watch with ?watch=true), "resource/subresource", rules of Roles only in
// their namespace, resourceNames matching only requests that name an object (never a create).
//
// Each kubeConfig() carries its own token, which stands for the user it was made for (a node
// plugin's pod token names its node: podServiceAccountUser). With the chart's admission policies
// (admission-request.ts), a write RBAC allows goes on to them, with the object as it is upstream,
// and is refused with the API server's Status when one denies it.
import { KubeConfig } from '@kubernetes/client-node';
import { IncomingMessage, Server, ServerResponse, createServer, request as httpRequest } from 'node:http';
import { AddressInfo } from 'node:net';
import { UserInfo } from './admission-policy';
import { Admission, Write } from './admission-request';
import { KubeObject } from './chart';
import { Rule, grant } from './chart-rbac';

/** Rules that apply in every namespace (ClusterRoles) and in one namespace only (Roles). */
export interface Grants {
  cluster: Rule[];
  namespaced: { namespace: string; rules: Rule[] }[];
}

/**
 * What a ServiceAccount of a render may do: its bindings' roles, resolved; only the roles named
 * `roleName` when it is given (a ServiceAccount shared by several containers).
 */
export function grantsOf(
  objects: KubeObject[],
  serviceAccount: string,
  namespace: string,
  roleName?: string,
): Grants {
  const role = (kind: string, name: string, roleNamespace?: string): KubeObject => {
    const found = objects.find(
      (object) =>
        object.kind === kind &&
        object.metadata.name === name &&
        (roleNamespace === undefined || object.metadata.namespace === roleNamespace),
    );
    if (!found) throw new Error(`no ${kind} ${name}`);
    return found;
  };
  const boundHere = (binding: KubeObject): boolean =>
    (roleName === undefined || binding.roleRef.name === roleName) &&
    (binding.subjects as { kind: string; name: string; namespace: string }[]).some(
      (subject) =>
        subject.kind === 'ServiceAccount' &&
        subject.name === serviceAccount &&
        subject.namespace === namespace,
    );
  const grants: Grants = { cluster: [], namespaced: [] };
  for (const binding of objects.filter((object) => object.kind === 'ClusterRoleBinding' && boundHere(object)))
    grants.cluster.push(...(role('ClusterRole', binding.roleRef.name).rules as Rule[]));
  for (const binding of objects.filter((object) => object.kind === 'RoleBinding' && boundHere(object))) {
    const bindingNamespace = binding.metadata.namespace as string;
    const rules =
      binding.roleRef.kind === 'ClusterRole'
        ? (role('ClusterRole', binding.roleRef.name).rules as Rule[])
        : (role('Role', binding.roleRef.name, bindingNamespace).rules as Rule[]);
    grants.namespaced.push({ namespace: bindingNamespace, rules });
  }
  return grants;
}

/** A request as RBAC sees it. */
export interface RequestAttributes {
  verb: string;
  group: string;
  version: string;
  /** The resource, with "/subresource" when there is one. */
  resource: string;
  namespace: string | undefined;
  name: string | undefined;
}

/** The attributes of a REST request (resource requests only; anything else is null). */
export function attributesOf(method: string, url: URL): RequestAttributes | null {
  const parts = url.pathname.split('/').filter(Boolean);
  let group: string;
  let version: string;
  let rest: string[];
  if (parts[0] === 'api' && parts.length >= 2) {
    group = '';
    version = parts[1]!;
    rest = parts.slice(2);
  } else if (parts[0] === 'apis' && parts.length >= 3) {
    group = parts[1]!;
    version = parts[2]!;
    rest = parts.slice(3);
  } else return null;
  let namespace: string | undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  const [resource, name, subresource] = rest;
  if (!resource) return null;
  const watching = ['1', 'true'].includes(url.searchParams.get('watch') ?? '');
  const verb =
    method === 'GET'
      ? name
        ? 'get'
        : watching
          ? 'watch'
          : 'list'
      : method === 'POST'
        ? 'create'
        : method === 'PUT'
          ? 'update'
          : method === 'PATCH'
            ? 'patch'
            : method === 'DELETE'
              ? name
                ? 'delete'
                : 'deletecollection'
              : method.toLowerCase();
  return {
    verb,
    group,
    version,
    resource: subresource ? `${resource}/${subresource}` : resource,
    namespace,
    name,
  };
}

/** The grant (see chart-rbac.ts grants()) of the first rule allowing the request, or null. */
export function authorize(grants: Grants, request: RequestAttributes): string | null {
  const applicable = [
    ...grants.cluster,
    ...grants.namespaced
      .filter(({ namespace }) => request.namespace === namespace)
      .flatMap(({ rules }) => rules),
  ];
  for (const rule of applicable) {
    if (!rule.apiGroups.includes(request.group)) continue;
    if (!rule.resources.includes(request.resource)) continue;
    if (!rule.verbs.includes(request.verb)) continue;
    if (rule.resourceNames && rule.resourceNames.length > 0) {
      // A named rule never allows create, list or watch of a collection: there is no name to match.
      if (request.name === undefined || !rule.resourceNames.includes(request.name)) continue;
      return grant(request.group, request.resource, request.verb, request.name);
    }
    return grant(request.group, request.resource, request.verb);
  }
  return null;
}

/**
 * The user the API server makes of a pod's projected ServiceAccount token: from Kubernetes 1.30 on
 * (ServiceAccountTokenPodNodeInfo) its extra names the pod's node, when `node` is given.
 */
export function podServiceAccountUser(namespace: string, serviceAccount: string, node?: string): UserInfo {
  return {
    username: `system:serviceaccount:${namespace}:${serviceAccount}`,
    groups: ['system:serviceaccounts', `system:serviceaccounts:${namespace}`, 'system:authenticated'],
    extra: {
      'authentication.kubernetes.io/pod-name': [`${serviceAccount}-pod`],
      ...(node === undefined ? {} : { 'authentication.kubernetes.io/node-name': [node] }),
    },
  };
}

const OPERATIONS: Record<string, Write['operation']> = {
  create: 'CREATE',
  update: 'UPDATE',
  delete: 'DELETE',
};

function statusBody(code: number, reason: string, message: string): string {
  return JSON.stringify({
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    reason,
    code,
    message,
  });
}

function answer(response: ServerResponse, code: number, body: string): void {
  response.writeHead(code, { 'Content-Type': 'application/json' });
  response.end(body);
}

async function readBody(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export class AuthorizingProxy {
  /** Grants requests used. */
  readonly used = new Set<string>();
  /** Requests RBAC refused, as "verb group/resource namespace/name". */
  readonly denied: string[] = [];
  /** Writes an admission policy refused, as "verb group/resource namespace/name: message". */
  readonly rejected: string[] = [];
  /** Writes the admission policies looked at and let through, as "verb group/resource". */
  readonly admitted = new Set<string>();
  private readonly users = new Map<string, UserInfo>();

  private constructor(
    private readonly server: Server,
    private readonly upstream: URL,
    private readonly grants: Grants,
    private readonly admission: Admission | undefined,
  ) {}

  static async start(upstream: string, grants: Grants, admission?: Admission): Promise<AuthorizingProxy> {
    const server = createServer();
    const proxy = new AuthorizingProxy(server, new URL(upstream), grants, admission);
    server.on('request', (request, response) => proxy.handle(request, response));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** A client configuration whose token authenticates as `user`. */
  kubeConfig(user: UserInfo): KubeConfig {
    const token = `token-${this.users.size + 1}`;
    this.users.set(token, user);
    const config = new KubeConfig();
    config.loadFromOptions({
      clusters: [{ name: 'proxy', server: this.url, skipTLSVerify: true }],
      users: [{ name: 'service-account', token }],
      contexts: [{ name: 'proxy', cluster: 'proxy', user: 'service-account' }],
      currentContext: 'proxy',
    });
    return config;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private handle(request: IncomingMessage, response: ServerResponse): void {
    this.serve(request, response).catch((error: unknown) => {
      if (response.headersSent) response.destroy();
      else answer(response, 500, statusBody(500, 'InternalError', `proxy: ${String(error)}`));
    });
  }

  private async serve(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', this.url);
    const user = this.users.get((request.headers.authorization ?? '').replace(/^Bearer /, ''));
    if (!user) {
      request.resume();
      answer(response, 401, statusBody(401, 'Unauthorized', 'Unauthorized'));
      return;
    }
    const attributes = attributesOf(request.method ?? 'GET', url);
    const allowed = attributes && authorize(this.grants, attributes);
    if (!allowed) {
      const what = attributes ? describe(attributes) : `${request.method} ${url.pathname}`;
      this.denied.push(what);
      request.resume();
      answer(response, 403, statusBody(403, 'Forbidden', `forbidden: ${what}`));
      return;
    }
    this.used.add(allowed);
    const write = this.admission && writeOf(attributes);
    if (!write || !this.admission!.concerns(write)) {
      this.forward(request, response, request);
      return;
    }
    if (!OPERATIONS[attributes.verb])
      throw new Error(`the admission of ${attributes.verb} is not modelled: ${describe(attributes)}`);
    const body = await readBody(request);
    const current = write.operation === 'CREATE' ? null : await this.currentObject(url, write);
    const denial = this.admission!.admit(
      {
        ...write,
        body: body.length > 0 ? (JSON.parse(body.toString()) as Record<string, unknown>) : null,
        user,
      },
      current,
    );
    if (!denial) {
      this.admitted.add(`${attributes.verb} ${attributes.group}/${attributes.resource}`);
      this.forward(request, response, body);
      return;
    }
    this.rejected.push(`${describe(attributes)}: ${String(denial.status.message)}`);
    answer(response, denial.code, JSON.stringify(denial.status));
  }

  /** The object a write changes, as the upstream API server has it (null when it has none). */
  private async currentObject(
    url: URL,
    write: Omit<Write, 'body' | 'user'>,
  ): Promise<Record<string, unknown> | null> {
    const path = write.subresource ? url.pathname.slice(0, -`/${write.subresource}`.length) : url.pathname;
    const reply = await fetch(new URL(path, this.upstream));
    if (reply.status === 404) return null;
    if (!reply.ok) throw new Error(`GET ${path}: ${reply.status}`);
    return (await reply.json()) as Record<string, unknown>;
  }

  private forward(request: IncomingMessage, response: ServerResponse, body: IncomingMessage | Buffer): void {
    const forwarded = httpRequest(
      {
        host: this.upstream.hostname,
        port: this.upstream.port,
        method: request.method,
        path: request.url,
        headers: request.headers,
      },
      (upstreamResponse) => {
        response.writeHead(upstreamResponse.statusCode ?? 502, upstreamResponse.headers);
        upstreamResponse.pipe(response);
      },
    );
    forwarded.on('error', () => response.destroy());
    response.on('close', () => forwarded.destroy());
    if (Buffer.isBuffer(body)) forwarded.end(body);
    else body.pipe(forwarded);
  }
}

function describe(attributes: RequestAttributes): string {
  return `${attributes.verb} ${attributes.group}/${attributes.resource} ${attributes.namespace ?? ''}/${attributes.name ?? ''}`;
}

/** A request that writes one object (or a collection: deletecollection, for admission to refuse). */
function writeOf(attributes: RequestAttributes | null): Omit<Write, 'body' | 'user'> | null {
  if (!attributes || ['get', 'list', 'watch'].includes(attributes.verb)) return null;
  const [resource, subresource] = attributes.resource.split('/') as [string, string | undefined];
  return {
    operation: OPERATIONS[attributes.verb] ?? (attributes.verb === 'patch' ? 'UPDATE' : 'DELETE'),
    group: attributes.group,
    version: attributes.version,
    resource,
    ...(subresource ? { subresource } : {}),
    ...(attributes.namespace ? { namespace: attributes.namespace } : {}),
    name: attributes.name ?? '',
  };
}
