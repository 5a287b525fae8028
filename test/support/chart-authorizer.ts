// An authorizing proxy in front of the fake Kubernetes API server: it holds the rules the chart
// grants one ServiceAccount and answers 403 to any request they do not allow, as the API server's
// RBAC authorizer would. It records what it refused and which grants the requests used, so a test
// can hold the chart's roles against what the code really does (chart-rbac.test.ts).
//
// RBAC as the API server applies it to resource requests: the verb from the method (GET of a
// collection is list, or watch with ?watch=true), "resource/subresource", rules of Roles only in
// their namespace, resourceNames matching only requests that name an object (never a create).
import { KubeConfig } from '@kubernetes/client-node';
import { IncomingMessage, Server, ServerResponse, createServer, request as httpRequest } from 'node:http';
import { AddressInfo } from 'node:net';
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
  /** The resource, with "/subresource" when there is one. */
  resource: string;
  namespace: string | undefined;
  name: string | undefined;
}

/** The attributes of a REST request (resource requests only; anything else is null). */
export function attributesOf(method: string, url: URL): RequestAttributes | null {
  const parts = url.pathname.split('/').filter(Boolean);
  let group: string;
  let rest: string[];
  if (parts[0] === 'api' && parts.length >= 2) {
    group = '';
    rest = parts.slice(2);
  } else if (parts[0] === 'apis' && parts.length >= 3) {
    group = parts[1]!;
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
  return { verb, group, resource: subresource ? `${resource}/${subresource}` : resource, namespace, name };
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

export class AuthorizingProxy {
  /** Grants requests used. */
  readonly used = new Set<string>();
  /** Requests refused, as "verb group/resource namespace/name". */
  readonly denied: string[] = [];

  private constructor(
    private readonly server: Server,
    private readonly upstream: URL,
    private readonly grants: Grants,
  ) {}

  static async start(upstream: string, grants: Grants): Promise<AuthorizingProxy> {
    const server = createServer();
    const proxy = new AuthorizingProxy(server, new URL(upstream), grants);
    server.on('request', (request, response) => proxy.handle(request, response));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  kubeConfig(): KubeConfig {
    const config = new KubeConfig();
    config.loadFromOptions({
      clusters: [{ name: 'proxy', server: this.url, skipTLSVerify: true }],
      users: [{ name: 'service-account', token: 'fake-token' }],
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
    const url = new URL(request.url ?? '/', this.url);
    const attributes = attributesOf(request.method ?? 'GET', url);
    const allowed = attributes && authorize(this.grants, attributes);
    if (!allowed) {
      const what = attributes
        ? `${attributes.verb} ${attributes.group}/${attributes.resource} ${attributes.namespace ?? ''}/${attributes.name ?? ''}`
        : `${request.method} ${url.pathname}`;
      this.denied.push(what);
      request.resume();
      response.writeHead(403, { 'Content-Type': 'application/json' });
      response.end(
        JSON.stringify({
          kind: 'Status',
          apiVersion: 'v1',
          metadata: {},
          status: 'Failure',
          reason: 'Forbidden',
          code: 403,
          message: `forbidden: ${what}`,
        }),
      );
      return;
    }
    this.used.add(allowed);
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
    request.pipe(forwarded);
  }
}
