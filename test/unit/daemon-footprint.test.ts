import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { Registry } from 'prom-client';
import { registerDaemonFootprint } from '../../src/metrics/daemon-footprint';
import { parseSamples, promtoolProblems, valueOf } from '../support/prometheus-text';

describe("a device daemon's footprint metrics", () => {
  it('give the PSS and threads of the daemon and of its standby, and nothing of a standby gone', async () => {
    const standby = spawn(
      process.execPath,
      ['-e', "process.stdout.write('ready\\n'); setInterval(() => undefined, 1000)"],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    try {
      await once(standby.stdout!, 'data');
      const registry = new Registry();
      registerDaemonFootprint(registry, () => [
        { process: 'daemon', pid: process.pid },
        { process: 'standby', pid: standby.pid! },
      ]);
      const text = await registry.metrics();
      assert.equal(promtoolProblems(text), '');
      const samples = parseSamples(text);
      for (const role of ['daemon', 'standby']) {
        const pss = valueOf(samples, 'vduse_csi_daemon_pss_bytes', { process: role });
        assert.ok(pss > 1 << 20 && pss % 1024 === 0, `${role}: ${pss} bytes`);
        // Node.js runs a few threads of its own (V8 platform workers, libuv).
        assert.ok(valueOf(samples, 'vduse_csi_daemon_threads', { process: role }) > 1);
      }
      standby.kill('SIGKILL');
      await once(standby, 'exit');
      const after = parseSamples(await registry.metrics());
      assert.deepEqual(
        after
          .filter((sample) => sample.name.startsWith('vduse_csi_daemon_'))
          .map((sample) => sample.labels.process),
        ['daemon', 'daemon'],
      );
    } finally {
      standby.kill('SIGKILL');
    }
  });
});
