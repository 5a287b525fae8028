#!/usr/bin/env node
import { BLK_USAGE, runBlkCommand } from './blk-commands';
import { PLUGIN_USAGE } from './plugin-usage';
import { DAEMON_USAGE, runDaemonCommand } from './daemon';
import { runMain } from './run-main';

const USAGE = `vduse-csi: virtio-blk volumes served from user space through VDUSE\n\n${BLK_USAGE}\n${DAEMON_USAGE}\n${PLUGIN_USAGE}`;

runMain(USAGE, async (argv) => {
  const [group, command, ...rest] = argv;
  if (group === 'blk') return runBlkCommand(command, rest);
  if (group === 'daemon') return runDaemonCommand(command, rest);
  if (group !== 'plugin') return false;
  // Loaded only here: gRPC, the CSI services and their protos would cost every daemon (which runs
  // this same CLI in the chart) about 30 MiB.
  const { plugin } = await import('./plugin');
  await plugin(argv.slice(1));
  return true;
});
