/**
 * Runs a CLI entry point: `dispatch` runs the command it knows (and resolves true) or resolves
 * false; no command, `help` or `--help` prints `usage`. Exit 0 on success, a one-line error and
 * exit 1 when the command throws or is unknown.
 */
export function runMain(usage: string, dispatch: (argv: string[]) => Promise<boolean>): void {
  const argv = process.argv.slice(2);
  const main = async (): Promise<void> => {
    if (await dispatch(argv)) return;
    if (argv[0] === undefined || argv[0] === '--help' || argv[0] === 'help') {
      process.stdout.write(`${usage}\n`);
      return;
    }
    throw new Error(`unknown command: ${argv.join(' ')}\n${usage}`);
  };
  main().then(
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(`vduse-csi: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(1);
    },
  );
}
