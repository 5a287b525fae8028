import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Server } from '@grpc/grpc-js';
import { HealthEndpoint } from '../../src/csi/health';
import { parseListenAddress } from '../../src/sys/http-listener';
import { IdentityService } from '../../src/csi/identity';
import { loadCsiServices } from '../../src/csi/proto';
import { serveCsi, shutdownCsi } from '../../src/csi/server';

/*
 * The probes' endpoint against a real CSI socket. This host has no VDUSE, so a node plugin here is
 * alive but not ready: exactly the case kubelet must not restart.
 */
describe('health endpoint (/healthz, /readyz)', function () {
  this.timeout(60_000);
  let directory: string;
  let endpoint: string;
  let server: Server | undefined;
  let health: HealthEndpoint | undefined;
  const changes: (string | null)[] = [];

  const get = async (path: string): Promise<{ status: number; body: string }> => {
    const response = await fetch(`http://127.0.0.1:${health!.port}${path}`);
    return { status: response.status, body: await response.text() };
  };

  beforeEach(async () => {
    directory = mkdtempSync(join(tmpdir(), 'vduse-health-'));
    endpoint = `unix://${join(directory, 'csi.sock')}`;
    changes.length = 0;
    const identity = new IdentityService({
      controller: false,
      node: true,
      dataDir: directory,
      onReadinessChange: (problem) => changes.push(problem),
    });
    server = await serveCsi(endpoint, [{ definition: loadCsiServices().identity, handlers: identity }]);
    health = await HealthEndpoint.start({
      address: '127.0.0.1:0',
      csiEndpoint: endpoint,
      readinessProblem: () => identity.readinessProblem(),
    });
  });

  afterEach(async () => {
    await health?.close();
    if (server) await shutdownCsi(server);
    rmSync(directory, { recursive: true, force: true });
  });

  it('a plugin that cannot serve volumes is alive (200) and not ready (503, with the reason)', async () => {
    assert.deepEqual(await get('/healthz'), { status: 200, body: 'ok\n' });
    const ready = await get('/readyz');
    assert.equal(ready.status, 503);
    assert.match(ready.body, /^not ready: \/dev\/vduse\/control is missing.*modprobe vduse/);
    // Probed again and again: reported once.
    await get('/readyz');
    assert.equal(changes.length, 1);
    assert.match(changes[0]!, /vduse/);
  });

  it('a plugin whose CSI socket no longer answers is not alive', async () => {
    await shutdownCsi(server!);
    server = undefined;
    const live = await get('/healthz');
    assert.equal(live.status, 503);
    assert.match(live.body, /does not answer Probe/);
    assert.equal((await get('/readyz')).status, 503);
  });

  it('answers 404 for anything else', async () => {
    assert.equal((await get('/metrics')).status, 404);
  });

  it('listens where it is told, and refuses an address it cannot use', async () => {
    assert.deepEqual(parseListenAddress(':9808', '--health-address'), { host: undefined, port: 9808 });
    assert.deepEqual(parseListenAddress('127.0.0.1:9838', '--health-address'), {
      host: '127.0.0.1',
      port: 9838,
    });
    assert.deepEqual(parseListenAddress('[::1]:1', '--health-address'), { host: '::1', port: 1 });
    for (const bad of ['9808', 'host:', 'a b:1', '127.0.0.1:65536'])
      assert.throws(() => parseListenAddress(bad, '--health-address'), /HOST:PORT/, bad);
    await assert.rejects(
      HealthEndpoint.start({
        address: `127.0.0.1:${health!.port}`,
        csiEndpoint: endpoint,
        readinessProblem: async () => null,
      }),
      /cannot listen for health probes on 127\.0\.0\.1:\d+: .*EADDRINUSE/,
    );
  });
});
