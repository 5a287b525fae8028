import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { existsSync } from 'node:fs';
import * as path from 'node:path';

/** Where csi.proto sits relative to the project root (shipped next to dist/). */
export const CSI_PROTO_PATH = path.join('proto', 'csi.proto');

/** The gRPC services of CSI v1.12.0, keyed as this code refers to them. */
export const CSI_SERVICE_NAMES = {
  identity: 'Identity',
  controller: 'Controller',
  groupController: 'GroupController',
  snapshotMetadata: 'SnapshotMetadata',
  node: 'Node',
} as const;

export type CsiServiceKey = keyof typeof CSI_SERVICE_NAMES;
export type CsiServices = Record<CsiServiceKey, grpc.ServiceDefinition>;
/** A grpc-js client with one method per RPC (grpc-js does not export this type by name). */
export type CsiClient = InstanceType<grpc.ServiceClientConstructor>;
export type CsiClients = Record<CsiServiceKey, CsiClient>;

// Messages as handlers see them: snake_case names, int64 as number, enums as names, unset fields
// filled with their defaults and each oneof's set member named (e.g. access_type: 'mount').
const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

/**
 * The first proto/csi.proto found in `start` or a directory above it. Both the tsc output
 * (dist/src/csi) and the esbuild bundle (dist/bundle) sit below the project root that holds it.
 */
export function findCsiProto(start: string = __dirname): string {
  let directory = path.resolve(start);
  for (;;) {
    const candidate = path.join(directory, CSI_PROTO_PATH);
    if (existsSync(candidate)) return candidate;
    const parent = path.dirname(directory);
    if (parent === directory) {
      throw new Error(`${CSI_PROTO_PATH} not found in ${start} or any directory above it`);
    }
    directory = parent;
  }
}

let clientConstructors: Record<CsiServiceKey, grpc.ServiceClientConstructor> | undefined;

function isClientConstructor(value: unknown): value is grpc.ServiceClientConstructor {
  return typeof value === 'function' && 'service' in value && 'serviceName' in value;
}

function member(object: unknown, name: string): unknown {
  return typeof object === 'object' && object !== null
    ? (object as Record<string, unknown>)[name]
    : undefined;
}

// google/protobuf/{descriptor,timestamp,wrappers}.proto need no include directory: protobufjs
// bundles them and proto-loader registers descriptor.proto among its common protos.
function loadClientConstructors(): Record<CsiServiceKey, grpc.ServiceClientConstructor> {
  if (clientConstructors) return clientConstructors;
  const packageObject = grpc.loadPackageDefinition(protoLoader.loadSync(findCsiProto(), LOADER_OPTIONS));
  const csiV1 = member(member(packageObject, 'csi'), 'v1');
  const lookup = (serviceName: string): grpc.ServiceClientConstructor => {
    const found = member(csiV1, serviceName);
    if (!isClientConstructor(found)) throw new Error(`csi.proto defines no service csi.v1.${serviceName}`);
    return found;
  };
  clientConstructors = {
    identity: lookup(CSI_SERVICE_NAMES.identity),
    controller: lookup(CSI_SERVICE_NAMES.controller),
    groupController: lookup(CSI_SERVICE_NAMES.groupController),
    snapshotMetadata: lookup(CSI_SERVICE_NAMES.snapshotMetadata),
    node: lookup(CSI_SERVICE_NAMES.node),
  };
  return clientConstructors;
}

/** The service definitions to hand to grpc.Server#addService; csi.proto is parsed once. */
export function loadCsiServices(): CsiServices {
  const constructors = loadClientConstructors();
  return {
    identity: constructors.identity.service,
    controller: constructors.controller.service,
    groupController: constructors.groupController.service,
    snapshotMetadata: constructors.snapshotMetadata.service,
    node: constructors.node.service,
  };
}

/**
 * Clients for every CSI service at `address` (e.g. unix:///csi/csi.sock), all on one channel:
 * closing any of them closes it for all.
 */
export function csiClients(
  address: string,
  credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
): CsiClients {
  const constructors = loadClientConstructors();
  const identity = new constructors.identity(address, credentials);
  const onSameChannel = { channelOverride: grpc.getClientChannel(identity) };
  return {
    identity,
    controller: new constructors.controller(address, credentials, onSameChannel),
    groupController: new constructors.groupController(address, credentials, onSameChannel),
    snapshotMetadata: new constructors.snapshotMetadata(address, credentials, onSameChannel),
    node: new constructors.node(address, credentials, onSameChannel),
  };
}

/** Calls a unary RPC by its csi.proto name; resolves with the response as proto-loader decodes it. */
export function callUnary(
  client: CsiClient,
  method: string,
  request: object,
  options: grpc.CallOptions = {},
): Promise<unknown> {
  const invoke = client[method];
  if (typeof invoke !== 'function') return Promise.reject(new Error(`no RPC ${method} on this client`));
  return new Promise((resolve, reject) => {
    invoke.call(client, request, options, (error: grpc.ServiceError | null, response: unknown) =>
      error ? reject(error) : resolve(response),
    );
  });
}
