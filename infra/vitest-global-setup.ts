// Placeholder until the local-services library lands: tests needing Redis/S3 are skipped.
export default async function setup(): Promise<() => Promise<void>> {
  return async () => {};
}
