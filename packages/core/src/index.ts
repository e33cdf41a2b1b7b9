export * from './errors.js';
export * from './config.js';
