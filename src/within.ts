/**
 * Waits for `work`, but at most `ms`: resolves with its value, or `'late'` when the time ran
 * out first (the work goes on; nothing cancels it). For stops and handoffs that must not
 * wait forever on something in flight.
 */
export function within<T>(work: Promise<T>, ms: number): Promise<T | 'late'> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((r) => {
    timer = setTimeout(() => r('late'), Math.max(0, ms));
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}
