/** What the offline commands take from the environment, as `serve` does: TOXSCOPE_DATA_DIR and TOXSCOPE_MODEL_DIR. */
import { resolve } from 'node:path';
import { loadCliEnvironment, type CliEnvironment } from '../config.js';
import type { CliIO } from './main.js';

/** `--data-dir` wins over TOXSCOPE_DATA_DIR (default .toxscope, relative to the working directory). */
export function cliEnvironment(dataDirFlag: unknown, io: CliIO): CliEnvironment {
  const env = loadCliEnvironment(io.env ?? {});
  return typeof dataDirFlag === 'string' ? { ...env, dataDir: resolve(dataDirFlag) } : env;
}
