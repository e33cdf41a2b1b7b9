/** The trainer's command line from source, for specs that start it in another process (or network namespace). */
import { main } from '../src/cli.js';

await main(process.argv.slice(2));
