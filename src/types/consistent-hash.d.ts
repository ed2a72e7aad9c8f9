declare module 'consistent-hash' {
  interface Options {
    range?: number;
    weight?: number;
    controlPoints?: number;
    distribution?: 'random' | 'uniform';
  }
  class ConsistentHash {
    constructor(options?: Options);
    add(node: string, weight?: number, points?: number[]): this;
    remove(node: string): this;
    get(name: string): string | null;
    getNodes(): string[];
  }
  export = ConsistentHash;
}
