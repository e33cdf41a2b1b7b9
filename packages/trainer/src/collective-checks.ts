/** Argument checks shared by the collective implementations (internal: not exported from the package). */
import { CollectiveError } from '@smolrate/core';

/** JSON round trip, so that every implementation (and every rank) returns the same kind of value. */
export function jsonRoundTrip<T>(value: T, what: string): T {
  const json = JSON.stringify(value);
  if (json === undefined) throw new CollectiveError(`${what}: the value is not JSON-serialisable (${typeof value})`);
  return JSON.parse(json) as T;
}

export function checkRoot(root: number, worldSize: number, what: string): void {
  if (!Number.isInteger(root) || root < 0 || root >= worldSize) {
    throw new CollectiveError(`${what}: root must be a rank in [0, ${worldSize - 1}], got ${root}`);
  }
}

/** Segment bounds of a reduce-scatter / all-gather: N + 1 integers rising from 0 to `length`. */
export function checkBounds(bounds: readonly number[], worldSize: number, length: number, what: string): void {
  const ok =
    bounds.length === worldSize + 1 &&
    bounds[0] === 0 &&
    bounds[worldSize] === length &&
    bounds.every((b, i) => Number.isSafeInteger(b) && (i === 0 || b >= bounds[i - 1]));
  if (!ok) throw new CollectiveError(`${what}: bounds must be ${worldSize + 1} rising offsets from 0 to ${length}, got [${bounds.join(', ')}]`);
}

/** Equal segments (sizes differ by at most one element). */
export function equalBounds(length: number, worldSize: number): number[] {
  return [...Array(worldSize + 1).keys()].map((s) => Math.floor((s * length) / worldSize));
}
