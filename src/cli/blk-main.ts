#!/usr/bin/env node
import { BLK_USAGE, runBlkCommand } from './blk-commands';
import { DAEMON_USAGE, runDaemonCommand } from './daemon';
import { runMain } from './run-main';

/*
 * The device runtime's own entry point (dist/bundle/vduse-blk.js): only the `blk` and `daemon`
 * commands, without gRPC or the Kubernetes client, so a server (and a restarted one) starts as fast
 * as it can.
 */
runMain(`vduse-csi (device server)\n\n${BLK_USAGE}\n${DAEMON_USAGE}`, async (argv) => {
  const [group, command, ...rest] = argv;
  if (group === 'daemon') return runDaemonCommand(command, rest);
  return group === 'blk' && runBlkCommand(command, rest);
});
