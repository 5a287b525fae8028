// Bundles the runtime (CLI and device threads) into one file each under dist/bundle: a process
// then reads one file instead of resolving hundreds of modules (node's start-up cost on slow
// filesystems such as the VM rig's 9p root). koffi stays external for its native binary.
const esbuild = require('esbuild');
const path = require('node:path');

const root = path.join(__dirname, '..');
esbuild
  .build({
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
  })
  .catch(() => process.exit(1));
