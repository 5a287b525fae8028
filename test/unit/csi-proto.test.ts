import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import {
  callUnary,
  CSI_PROTO_PATH,
  CsiServiceKey,
  csiClients,
  findCsiProto,
  loadCsiServices,
} from '../../src/csi/proto';

/** Every RPC of CSI v1.12.0 in csi.proto order; each takes <Name>Request and returns <Name>Response. */
const RPCS: Record<CsiServiceKey, string[]> = {
  identity: ['GetPluginInfo', 'GetPluginCapabilities', 'Probe'],
  controller: [
    'CreateVolume',
    'DeleteVolume',
    'ControllerPublishVolume',
    'ControllerUnpublishVolume',
    'ValidateVolumeCapabilities',
    'ListVolumes',
    'GetCapacity',
    'ControllerGetCapabilities',
    'CreateSnapshot',
    'DeleteSnapshot',
    'ListSnapshots',
    'GetSnapshot',
    'ControllerExpandVolume',
    'ControllerGetVolume',
    'ControllerModifyVolume',
  ],
  groupController: [
    'GroupControllerGetCapabilities',
    'CreateVolumeGroupSnapshot',
    'DeleteVolumeGroupSnapshot',
    'GetVolumeGroupSnapshot',
  ],
  snapshotMetadata: ['GetMetadataAllocated', 'GetMetadataDelta'],
  node: [
    'NodeStageVolume',
    'NodeUnstageVolume',
    'NodePublishVolume',
    'NodeUnpublishVolume',
    'NodeGetVolumeStats',
    'NodeExpandVolume',
    'NodeGetCapabilities',
    'NodeGetInfo',
  ],
};

const SERVICE_PATHS: Record<CsiServiceKey, string> = {
  identity: 'csi.v1.Identity',
  controller: 'csi.v1.Controller',
  groupController: 'csi.v1.GroupController',
  snapshotMetadata: 'csi.v1.SnapshotMetadata',
  node: 'csi.v1.Node',
};

const STREAMING_RESPONSES = new Set(['GetMetadataAllocated', 'GetMetadataDelta']);

/** The message name proto-loader recorded for one side of a method (its DescriptorProto's name). */
function messageName(
  method: grpc.MethodDefinition<unknown, unknown>,
  side: 'requestType' | 'responseType',
): unknown {
  const typeDefinition: unknown = (method as unknown as Record<string, unknown>)[side];
  if (typeof typeDefinition !== 'object' || typeDefinition === null || !('type' in typeDefinition))
    return undefined;
  const descriptor: unknown = typeDefinition.type;
  return typeof descriptor === 'object' && descriptor !== null && 'name' in descriptor
    ? descriptor.name
    : undefined;
}

function roundTripRequest(service: grpc.ServiceDefinition, method: string, message: object): unknown {
  const definition = service[method]!;
  return definition.requestDeserialize(definition.requestSerialize(message));
}

function roundTripResponse(service: grpc.ServiceDefinition, method: string, message: object): unknown {
  const definition = service[method]!;
  return definition.responseDeserialize(definition.responseSerialize(message));
}

describe('csi.proto definitions', () => {
  const services = loadCsiServices();

  it('finds proto/csi.proto above the compiled module', () => {
    assert.equal(path.basename(findCsiProto()), 'csi.proto');
  });

  it('finds proto/csi.proto from a directory nested below it', () => {
    const root = mkdtempSync(path.join(tmpdir(), 'csi-proto-find-'));
    try {
      mkdirSync(path.join(root, 'proto'));
      writeFileSync(path.join(root, CSI_PROTO_PATH), 'syntax = "proto3";\n');
      const nested = path.join(root, 'dist', 'bundle');
      mkdirSync(nested, { recursive: true });
      assert.equal(findCsiProto(nested), path.join(root, CSI_PROTO_PATH));
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('parses csi.proto once', () => {
    assert.equal(loadCsiServices().controller, services.controller);
  });

  for (const [key, rpcs] of Object.entries(RPCS) as [CsiServiceKey, string[]][]) {
    it(`defines every ${SERVICE_PATHS[key]} RPC of v1.12.0 with its message types`, () => {
      const service = services[key];
      assert.deepEqual(Object.keys(service), rpcs);
      for (const rpc of rpcs) {
        const method = service[rpc]!;
        assert.equal(method.path, `/${SERVICE_PATHS[key]}/${rpc}`);
        assert.equal(messageName(method, 'requestType'), `${rpc}Request`, rpc);
        assert.equal(messageName(method, 'responseType'), `${rpc}Response`, rpc);
        assert.equal(method.requestStream, false, rpc);
        assert.equal(method.responseStream, STREAMING_RESPONSES.has(rpc), rpc);
      }
    });
  }

  it('round-trips CreateVolumeRequest: access_type oneof, int64 beyond 32 bits, secrets map', () => {
    const request = {
      name: 'pvc-1',
      capacity_range: { required_bytes: 5 * 2 ** 40, limit_bytes: Number.MAX_SAFE_INTEGER },
      volume_capabilities: [
        {
          mount: { fs_type: 'xfs', mount_flags: ['noatime'], volume_mount_group: '' },
          access_mode: { mode: 'SINGLE_NODE_WRITER' },
        },
        { block: {}, access_mode: { mode: 'SINGLE_NODE_SINGLE_WRITER' } },
      ],
      parameters: { tier: 'fast' },
      secrets: { user: 'admin', password: 's3cret' },
      mutable_parameters: { iops: '3000' },
    };
    assert.deepEqual(roundTripRequest(services.controller, 'CreateVolume', request), {
      ...request,
      volume_capabilities: [
        { ...request.volume_capabilities[0], access_type: 'mount' },
        { ...request.volume_capabilities[1], access_type: 'block' },
      ],
      volume_content_source: null,
      accessibility_requirements: null,
    });
  });

  it('encodes GetCapacityResponse with the spec field numbers and Int64Value wrappers', () => {
    const response = {
      available_capacity: 2 ** 40,
      maximum_volume_size: { value: 7 },
      minimum_volume_size: { value: 1 },
    };
    const definition = services.controller.GetCapacity!;
    const wire = definition.responseSerialize(response);
    // 1: varint 2^40; 2: Int64Value{1: 7}; 3: Int64Value{1: 1}
    assert.equal(wire.toString('hex'), '08808080808020' + '12020807' + '1a020801');
    assert.deepEqual(definition.responseDeserialize(wire), response);
    assert.deepEqual(roundTripResponse(services.controller, 'GetCapacity', { available_capacity: 0 }), {
      available_capacity: 0,
      maximum_volume_size: null,
      minimum_volume_size: null,
    });
  });

  it('round-trips a Snapshot with its google.protobuf.Timestamp creation_time', () => {
    const response = {
      snapshot: {
        size_bytes: 3 * 2 ** 33,
        snapshot_id: 'snap-1',
        source_volume_id: 'vol-1',
        creation_time: { seconds: 1_760_000_000, nanos: 123_000_000 },
        ready_to_use: true,
        group_snapshot_id: '',
      },
    };
    assert.deepEqual(roundTripResponse(services.controller, 'CreateSnapshot', response), response);
  });

  it('fills defaults and names enums in NodeGetCapabilitiesResponse', () => {
    const response = { capabilities: [{ rpc: { type: 'STAGE_UNSTAGE_VOLUME' } }, { rpc: {} }] };
    assert.deepEqual(roundTripResponse(services.node, 'NodeGetCapabilities', response), {
      capabilities: [
        { rpc: { type: 'STAGE_UNSTAGE_VOLUME' }, type: 'rpc' },
        { rpc: { type: 'UNKNOWN' }, type: 'rpc' },
      ],
    });
  });
});

describe('csi gRPC over a unix socket', function () {
  // A real gRPC server and client: up to 0.07 s for a case here under load.
  this.timeout(5_000);
  let directory: string;
  let server: grpc.Server;
  let address: string;

  before(async () => {
    directory = mkdtempSync(path.join(tmpdir(), 'csi-proto-'));
    address = `unix://${path.join(directory, 'csi.sock')}`;
    server = new grpc.Server();
    server.addService(loadCsiServices().identity, {
      GetPluginInfo: (
        _call: grpc.ServerUnaryCall<unknown, unknown>,
        callback: grpc.sendUnaryData<unknown>,
      ): void => callback(null, { name: 'csi.test.example', vendor_version: '1.2.3', manifest: { a: 'b' } }),
    });
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error) =>
        error ? reject(error) : resolve(),
      ),
    );
  });

  after(async () => {
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    rmSync(directory, { recursive: true, force: true });
  });

  it('answers Identity.GetPluginInfo and reports unimplemented RPCs', async () => {
    const clients = csiClients(address);
    try {
      assert.equal(grpc.getClientChannel(clients.node), grpc.getClientChannel(clients.identity));
      const deadline = Date.now() + 5000;
      assert.deepEqual(await callUnary(clients.identity, 'GetPluginInfo', {}, { deadline }), {
        name: 'csi.test.example',
        vendor_version: '1.2.3',
        manifest: { a: 'b' },
      });
      await assert.rejects(callUnary(clients.identity, 'Probe', {}, { deadline }), {
        code: grpc.status.UNIMPLEMENTED,
      });
      await assert.rejects(callUnary(clients.controller, 'CreateVolume', { name: 'v' }, { deadline }), {
        code: grpc.status.UNIMPLEMENTED,
      });
    } finally {
      clients.identity.close();
    }
  });
});
