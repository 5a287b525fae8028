import { CsiHarness } from '../support/csi-harness';
import { VolumeKind, kubeletFlow } from './kubelet-flow';

/*
 * `npm run demo`: the embedded default (one `vduse-csi plugin --mode all` on a unix socket,
 * file-backed volumes) driven through the whole CSI flow over gRPC, as kubelet and the sidecars
 * would, printing each step and what it made.
 */
async function main(): Promise<void> {
  const cli = [process.execPath, require.resolve('../../bundle/vduse-csi.js')];
  const root = process.env.VDUSE_CSI_SCRATCH ?? '/tmp';
  const csi = await CsiHarness.start({ cli, root: `${root}/csi-demo`, mode: 'all' });
  process.stdout.write(`plugin: vduse-csi plugin --mode all --endpoint ${csi.options.endpoint}\n`);
  try {
    for (const kind of ['ext4', 'xfs', 'block'] as VolumeKind[]) {
      process.stdout.write(`\n== ${kind} volume\n`);
      await kubeletFlow(csi, kind, (step, facts) =>
        process.stdout.write(`-- ${step}${facts ? `\n   ${JSON.stringify(facts)}` : ''}\n`),
      );
    }
    process.stdout.write('\ndemo finished: every step passed\n');
  } finally {
    await csi.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`demo failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
