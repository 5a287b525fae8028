/**
 * `read` made once per scrape: prom-client calls the collect of every metric one after another in a
 * single synchronous run when scraped, so a value kept until the next microtask serves them all.
 */
export function oncePerScrape<T>(read: () => T): () => T {
  let kept: { value: T } | undefined;
  return () => {
    if (!kept) {
      kept = { value: read() };
      queueMicrotask(() => (kept = undefined));
    }
    return kept.value;
  };
}
