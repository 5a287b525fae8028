import { transform } from 'esbuild';
import koffi from 'koffi';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import protobuf from 'protobufjs';

/*
 * npm 11 runs no dependency's install script unless package.json's allowScripts approves it, and
 * warns at every install about each one it has no entry for. The project decides for each of them
 * (docs/dependencies.md): today none is needed, so each is denied by name.
 */

const ROOT = join(__dirname, '../../..');

function readJson(file: string): Record<string, unknown> {
  return JSON.parse(readFileSync(join(ROOT, file), 'utf8')) as Record<string, unknown>;
}

/** The names of the packages in package-lock.json that have install scripts. */
function lockedPackagesWithInstallScripts(): string[] {
  const packages = readJson('package-lock.json').packages as Record<string, { hasInstallScript?: boolean }>;
  const names = Object.entries(packages)
    .filter(([, entry]) => entry.hasInstallScript === true)
    .map(([path]) => path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length));
  return [...new Set(names)].sort();
}

describe('install scripts of dependencies', () => {
  const allowScripts = readJson('package.json').allowScripts as Record<string, unknown>;

  it('has a decision in package.json#allowScripts for exactly the locked packages with install scripts', () => {
    assert.deepEqual(Object.keys(allowScripts).sort(), lockedPackagesWithInstallScripts());
  });

  it('decides by name, true or false (no version pins that a dependency update would silently void)', () => {
    for (const [name, decision] of Object.entries(allowScripts)) {
      assert.doesNotMatch(name, /.@/, `${name}: a pinned entry`);
      assert.equal(typeof decision, 'boolean', `${name}: ${JSON.stringify(decision)}`);
    }
  });

  describe('the denied ones work as installed, without their scripts', function () {
    // esbuild starts its binary, koffi loads libc: up to 0.1 s here.
    this.timeout(10_000);

    it('koffi loads its prebuilt binary (its script only checks that, or else compiles koffi)', () => {
      assert.equal(allowScripts.koffi, false);
      const getpid = koffi.load('libc.so.6').func('int getpid()') as () => number;
      assert.equal(getpid(), process.pid);
    });

    it('esbuild finds its platform binary (its script only verifies it and links it into bin/)', async () => {
      assert.equal(allowScripts.esbuild, false);
      const { code } = await transform('let answer: number = 42', { loader: 'ts' });
      assert.equal(code, 'let answer = 42;\n');
    });

    it('protobufjs loads (its script only warns dependents about its version scheme)', () => {
      assert.equal(allowScripts.protobufjs, false);
      const root = new protobuf.Root().add(
        new protobuf.Type('Answer').add(new protobuf.Field('value', 1, 'int32')),
      );
      const answer = root.lookupType('Answer');
      assert.deepEqual(answer.toObject(answer.decode(answer.encode({ value: 42 }).finish())), { value: 42 });
    });
  });
});
