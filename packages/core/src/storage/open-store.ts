/**
 * `openStore(uri)`: the store for a location — S3Store for `s3://`, LocalStore for plain paths
 * and `file://`. S3 stores opened without options share one client (one connection pool) per
 * endpoint/region/addressing configuration.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import { LocalStore } from './local-store.js';
import { createS3Client, resolveS3Settings } from './s3-client.js';
import { S3Store, type S3StoreOptions } from './s3-store.js';
import type { Store } from './store.js';
import { parseStorageUri } from './uri.js';

const sharedClients = new Map<string, S3Client>();

function sharedS3Client(): S3Client {
  const settings = resolveS3Settings();
  const id = JSON.stringify(settings);
  let client = sharedClients.get(id);
  if (client === undefined) {
    client = createS3Client(settings);
    sharedClients.set(id, client);
  }
  return client;
}

export function openStore(uri: string, s3Options?: S3StoreOptions): Store {
  const loc = parseStorageUri(uri);
  if (loc.scheme === 'file') return new LocalStore(uri);
  const opts = s3Options ?? {};
  const hasClientOptions =
    opts.client !== undefined ||
    opts.endpoint !== undefined ||
    opts.region !== undefined ||
    opts.forcePathStyle !== undefined ||
    opts.retry !== undefined ||
    opts.connectionTimeoutMs !== undefined ||
    opts.socketTimeoutMs !== undefined ||
    opts.requestHandler !== undefined;
  return new S3Store(uri, hasClientOptions ? opts : { ...opts, client: sharedS3Client() });
}
