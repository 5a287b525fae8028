// Bundles the runtime (CLI and device threads) into one file each under dist/bundle: a process
// then reads one file instead of resolving hundreds of modules (node's start-up cost on slow
// filesystems such as the VM rig's 9p root). koffi stays external for its native binary.
const esbuild = require('esbuild');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const runtime = esbuild.build({
  entryPoints: {
    'vduse-csi': path.join(root, 'src/cli/main.ts'),
    // The CSI plugin (gRPC, the CSI services, the Kubernetes client) in its own file, which the
    // CLI loads for `plugin` only: a daemon run from vduse-csi.js (the chart's) would otherwise
    // parse and keep it all, about 30 MiB per process.
    plugin: path.join(root, 'src/cli/plugin.ts'),
    // What device servers run: the blk commands alone start faster than the whole CLI.
    'vduse-blk': path.join(root, 'src/cli/blk-main.ts'),
    'queue-worker': path.join(root, 'src/daemon/queue-worker.ts'),
    'vdpa-bind': path.join(root, 'src/daemon/vdpa-bind.ts'),
    'large-io-worker': path.join(root, 'src/backend/large-io-worker.ts'),
  },
  outdir: path.join(root, 'dist/bundle'),
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  external: ['koffi'],
  plugins: [
    {
      name: 'plugin-apart',
      setup(build) {
        build.onResolve({ filter: /^\.\/plugin$/ }, (args) =>
          args.importer.endsWith(path.join('src', 'cli', 'main.ts'))
            ? { path: './plugin.js', external: true }
            : undefined,
        );
      },
    },
  ],
  // Every isolate keeps the source of its bundle as a string, one byte per character if it is
  // all ASCII, else two: without comments and indentation, and with the licence comments in
  // NAME.js.LEGAL.txt (one names a person with a non-ASCII letter), the CLI's source takes
  // 0.48 MB in each daemon process instead of 1.44 MB, the plugin's 4.25 MB instead of 16 MB.
  minifyWhitespace: true,
  legalComments: 'external',
  sourcemap: true,
  logLevel: 'warning',
});

// Every kernel test file in one bundle, for the VM: mocha loading them one by one resolved about 740
// modules over the VM's uncached 9p root, 130-190 s under emulation before the first test. The
// bundle sits beside the files it joins, so each test's __dirname (paths to the CLI bundles, the
// Ceph script) means what it did; the runtime's own __dirname (where it finds its worker and bind
// scripts) becomes dist/bundle, where their bundled versions are.
const kernelTestDir = path.join(root, 'test/kernel');
const kernelTests = (fs.existsSync(kernelTestDir) ? fs.readdirSync(kernelTestDir) : [])
  .filter((name) => name.endsWith('.test.ts'))
  .sort()
  .map((name) => `import './${name.replace(/\.ts$/, '')}';`);
// The image's build has no tests.
const kernelTestBundle =
  kernelTests.length === 0
    ? Promise.resolve()
    : esbuild.build({
        stdin: {
          contents: kernelTests.join('\n'),
          resolveDir: kernelTestDir,
          sourcefile: 'kernel-tests.ts',
          loader: 'ts',
        },
        outfile: path.join(root, 'dist/test/kernel/kernel-tests.bundle.js'),
        bundle: true,
        platform: 'node',
        target: 'node20',
        format: 'cjs',
        // chart-schemas finds the client's schemas next to its package.json.
        external: ['koffi', '@kubernetes/client-node/package.json'],
        banner: { js: "const __runtimeDir = require('node:path').join(__dirname, '../../bundle');" },
        plugins: [
          {
            name: 'runtime-scripts-from-bundle-dir',
            setup(build) {
              build.onLoad({ filter: /[\\/]src[\\/].*\.ts$/ }, async (args) => ({
                contents: (await fs.promises.readFile(args.path, 'utf8')).replace(
                  /\b__dirname\b/g,
                  '__runtimeDir',
                ),
                loader: 'ts',
              }));
            },
          },
        ],
        minifyWhitespace: true,
        sourcemap: true,
        logLevel: 'warning',
      });

Promise.all([runtime, kernelTestBundle]).catch(() => process.exit(1));
