/**
 * Entry of one forked training worker (launch.ts): the rank comes from the torchrun-like
 * environment, the resolved config from SMOLRATE_TRAINER_CONFIG. Exits when the launcher's IPC
 * channel goes away (the launcher died), so a killed launcher leaves no orphans.
 */
import { ConfigError, reportError } from '@smolrate/core';
import { resolveTrainerConfig } from './config.js';
import { CONFIG_ENV, runWorker, workerEnv } from './train-worker.js';

if (process.send !== undefined) process.on('disconnect', () => process.exit(70));

const program = `smolrate-trainer worker ${process.env.RANK ?? '?'}`;
let code = 0;
try {
  const json = process.env[CONFIG_ENV];
  if (json === undefined) throw new ConfigError(`${CONFIG_ENV} is not set (workers are started by "smolrate-trainer launch")`);
  await runWorker(resolveTrainerConfig({ file: JSON.parse(json) as object }), workerEnv());
} catch (e) {
  code = reportError(program, e);
}
// Exit explicitly: the tfjs backend may hold handles that would keep the event loop alive.
process.exit(code);
