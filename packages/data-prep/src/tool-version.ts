/**
 * The version written into manifest.json: this package's `version`. Read from package.json next
 * to `src/` and `dist/` alike (both sit one level below the package root).
 */
import { readFileSync } from 'node:fs';

let cached: string | undefined;

export function toolVersion(): string {
  if (cached === undefined) {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { name: string; version: string };
    cached = `${pkg.name}@${pkg.version}`;
  }
  return cached;
}
