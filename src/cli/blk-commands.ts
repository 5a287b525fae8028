import { BLK_USAGE, handover, resize, serve } from './blk';

/** Runs a `blk` command; false when `command` is not one. */
export async function runBlkCommand(command: string | undefined, argv: string[]): Promise<boolean> {
  if (command === 'serve') await serve(argv);
  else if (command === 'resize') await resize(argv);
  else if (command === 'handover') await handover(argv);
  else return false;
  return true;
}

export { BLK_USAGE };
