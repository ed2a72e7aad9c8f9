import type { MeshNode } from '../helpers/mesh.ts';
import { metric } from '../twilio/sms-node.ts';

/**
 * What every chaos scenario shares: its length (the full form, or `CHAOS_SHORT=1`
 * for CI) and one line of figures per run, `[chaos] <scenario>: key=value …`, which CI and
 * the README's Reliability table read.
 */

/** True under `CHAOS_SHORT=1`: every scenario runs a shorter form of itself. */
export const SHORT = process.env.CHAOS_SHORT === '1';

/** `full` in the full run, `short` under CHAOS_SHORT=1. */
export function length<T>(full: T, short: T): T {
  return SHORT ? short : full;
}

/** Prints the scenario's figures on one line, in a format grep can pick out of vitest's output. */
export function figures(scenario: string, values: Record<string, number | string>): void {
  const pairs = Object.entries(values).map(([k, v]) => `${k}=${v}`);
  console.log(`[chaos] ${scenario}${SHORT ? ' (short)' : ''}: ${pairs.join(' ')}`);
}

/** A counter or gauge of the nodes' /metrics, summed over them (0 where absent). */
export async function sumMetric(nodes: readonly MeshNode[], series: string): Promise<number> {
  let total = 0;
  for (const n of nodes) total += metric(await (await fetch(`${n.url}/metrics`)).text(), series);
  return total;
}
