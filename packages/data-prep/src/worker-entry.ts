/**
 * Process entry of a forked data-prep worker (worker-pool.ts forks it): runs the `worker`
 * command with this process's arguments, then drops the IPC channel so the process can exit.
 * Not part of the package API (it runs on import).
 */
import { main } from './cli.js';

await main(['worker', ...process.argv.slice(2)]);
if (process.connected) process.disconnect();
