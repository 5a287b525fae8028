/** SIGTERM or SIGINT: `reason` resolves with the signal's name, and `signal` aborts. */
export function stopRequests(): { reason: Promise<string>; signal: AbortSignal } {
  const controller = new AbortController();
  const reason = new Promise<string>((resolve) => {
    const stop = (name: string): void => {
      controller.abort();
      resolve(name);
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  return { reason, signal: controller.signal };
}
