/** Listeners per event name, typed by an events map (`{ name: payload }`). */
export class Emitter<Events> {
  private readonly listeners = new Map<keyof Events, Set<(event: never) => void>>();

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof Events>(event: K, listener: (event: Events[K]) => void): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener as (event: never) => void);
    return () => set.delete(listener as (event: never) => void);
  }

  emit<K extends keyof Events>(event: K, value: Events[K]): void {
    for (const listener of this.listeners.get(event) ?? [])
      (listener as (event: Events[K]) => void)(value);
  }
}
