#!/usr/bin/env node
import { BLK_USAGE, runBlkCommand } from './blk-commands';
import { PLUGIN_USAGE, plugin } from './plugin';
import { runMain } from './run-main';

const USAGE = `vduse-csi: virtio-blk volumes served from user space through VDUSE\n\n${BLK_USAGE}\n${PLUGIN_USAGE}`;

runMain('vduse-csi', async (argv) => {
  const [group, command, ...rest] = argv;
  if (group === 'blk' && (await runBlkCommand(command, rest))) return;
  if (group === 'plugin') return plugin(argv.slice(1));
  if (group === undefined || group === '--help' || group === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  throw new Error(`unknown command: ${argv.join(' ')}\n${USAGE}`);
});
