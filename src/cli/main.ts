#!/usr/bin/env node
import { BLK_USAGE, resize, serve } from './blk';

const USAGE = `vduse-csi: virtio-blk volumes served from user space through VDUSE\n\n${BLK_USAGE}`;

async function main(argv: string[]): Promise<void> {
  const [group, command, ...rest] = argv;
  if (group === 'blk' && command === 'serve') return serve(rest);
  if (group === 'blk' && command === 'resize') return resize(rest);
  if (group === undefined || group === '--help' || group === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  throw new Error(`unknown command: ${argv.join(' ')}\n${USAGE}`);
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`vduse-csi: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
