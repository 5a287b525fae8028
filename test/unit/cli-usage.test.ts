import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const ENTRY_POINTS = {
  'vduse-csi': join(__dirname, '../../src/cli/main.js'),
  'vduse-blk (device server)': join(__dirname, '../../src/cli/blk-main.js'),
};

function run(script: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [script, ...args], { encoding: 'utf8' });
}

describe('command-line usage', function () {
  // Each case starts node processes: 0.2-0.4 s here, 2.8 s while VMs ran beside (over mocha's
  // default 2 s); ten times that for a slow CI runner.
  this.timeout(30_000);
  for (const [name, script] of Object.entries(ENTRY_POINTS)) {
    describe(name, () => {
      for (const args of [[], ['--help'], ['help']]) {
        it(`prints usage on stdout and exits 0 for ${JSON.stringify(args)}`, () => {
          const result = run(script, args);
          assert.equal(result.status, 0, result.stderr);
          assert.match(result.stdout, /vduse-csi blk serve --file PATH/);
        });
      }

      it('refuses an unknown command with exit 1 and the usage on stderr', () => {
        for (const args of [['frobnicate'], ['blk', 'frobnicate']]) {
          const result = run(script, args);
          assert.equal(result.status, 1);
          assert.equal(result.stdout, '');
          assert.match(result.stderr, new RegExp(`^vduse-csi: unknown command: ${args.join(' ')}\\n`));
          assert.match(result.stderr, /vduse-csi blk serve --file PATH/);
        }
      });
    });
  }
});
