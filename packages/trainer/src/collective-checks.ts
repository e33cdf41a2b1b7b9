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
