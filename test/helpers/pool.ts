/**
 * Runs `one(0)` … `one(count - 1)`, at most `concurrency` at a time: thousands of
 * connections or admin requests, without opening them all at once.
 */
export async function pool(
  count: number,
  concurrency: number,
  one: (i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await one(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}
