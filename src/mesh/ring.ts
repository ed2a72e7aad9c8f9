import { crc32 } from 'node:zlib';
import ConsistentHash from 'consistent-hash';

export const RING_RANGE = 10_007;
export const POINTS_PER_NODE = 128;

/**
 * Partition ownership from the live node ids alone. Control points come from each node id
 * (never random), and nodes are added in sorted order, so every node computes the same
 * owner for every partition without talking to the others.
 */
export class Ring {
  private readonly hash = new ConsistentHash({ range: RING_RANGE });
  readonly nodes: readonly string[];

  constructor(nodes: Iterable<string>) {
    this.nodes = [...new Set(nodes)].sort();
    for (const node of this.nodes) this.hash.add(node, POINTS_PER_NODE, controlPoints(node));
  }

  /** The owner of partition n, or undefined with no live nodes. */
  owner(partition: number): string | undefined {
    return this.hash.get(partitionKey(partition)) ?? undefined;
  }

  /** The node that should run a named thing (a one-node source), or undefined with no nodes. */
  ownerOf(key: string): string | undefined {
    return this.hash.get(crc32(key).toString(36)) ?? undefined;
  }

  /** `owners[n]` is the owner of partition n. */
  owners(partitions: number): (string | undefined)[] {
    return Array.from({ length: partitions }, (_, n) => this.owner(n));
  }

  partitionsOf(node: string, partitions: number): number[] {
    const mine: number[] = [];
    for (let n = 0; n < partitions; n++) if (this.owner(n) === node) mine.push(n);
    return mine;
  }
}

/**
 * The ring key of partition n: `p<n>` mixed through CRC-32. consistent-hash's own string
 * hash (PJW) clusters correlated names like p0…p63 onto a few control points, which left
 * one of three nodes with almost nothing; mixed keys spread like random ones.
 */
function partitionKey(n: number): string {
  return crc32(`p${n}`).toString(36);
}

function controlPoints(node: string): number[] {
  return Array.from({ length: POINTS_PER_NODE }, (_, i) => crc32(`${node}#${i}`) % RING_RANGE);
}
