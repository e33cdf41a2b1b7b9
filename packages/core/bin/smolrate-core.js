#!/usr/bin/env node
import { main } from '../dist/core-cli.js';

main(process.argv.slice(2));
