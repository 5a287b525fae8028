/*
 * Skipping a case is never silent: mocha shows a skipped case only as "pending", easily missed in a
 * long run. Every skip says on the console what was skipped and why, and a root-only case that
 * cannot run under CI fails instead: CI runs as root, so there it is a broken runner, never a pass.
 */

/** What decides whether a root-only case runs; the running process by default. */
export interface RunnerFacts {
  uid: number | undefined;
  /** CI=true (or 1), as CI services set it. */
  ci: boolean;
  log: (line: string) => void;
}

export function thisRunner(): RunnerFacts {
  return {
    uid: process.getuid?.(),
    ci: process.env.CI === 'true' || process.env.CI === '1',
    log: (line) => console.log(line),
  };
}

/** What is being skipped: a case, or a hook before several (mocha names the hook by its first case). */
function describeRunnable(context: Mocha.Context): string {
  return context.test?.fullTitle() ?? 'this case';
}

/** Skips the case (or, from a hook, the cases it prepares) after a console line saying why. */
export function skipBecause(context: Mocha.Context, why: string, log = thisRunner().log): never {
  log(`      (skipped: ${describeRunnable(context)}: ${why})`);
  context.skip();
}

/**
 * For a case, or a hook before cases, that only root can run: as root it returns; otherwise it
 * fails under CI and skips with a console line elsewhere.
 */
export function requireRoot(context: Mocha.Context, why: string, runner = thisRunner()): void {
  if (runner.uid === 0) return;
  if (runner.ci)
    throw new Error(`${describeRunnable(context)}: needs root (${why}), and under CI=true it must run`);
  skipBecause(context, `not root: ${why}`, runner.log);
}
