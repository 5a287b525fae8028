#!/usr/bin/env node
import { BLK_USAGE, runBlkCommand } from './blk-commands';
import { runMain } from './run-main';

/*
 * The device server's own entry point (dist/bundle/vduse-blk.js): only the `blk` commands, without
 * gRPC or the Kubernetes client, so a server (and a restarted one) starts as fast as it can.
 */
runMain(`vduse-csi (device server)\n\n${BLK_USAGE}`, async (argv) => {
  const [group, command, ...rest] = argv;
  return group === 'blk' && runBlkCommand(command, rest);
});
