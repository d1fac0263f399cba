/**
 * `toxscope serve [flags]`: the HTTP service. Flags mirror the environment variables (src/config.ts);
 * flags win. Runs until SIGTERM or SIGINT, then shuts down gracefully (exit code 0).
 */
import { configHelp, loadConfig } from '../config.js';
import { createLogger } from '../util/logger.js';
import { startService, type StartOptions } from '../main.js';
import type { CliIO, Command } from './main.js';

export const serveCommand: Command = {
  name: 'serve',
  summary: 'Run the HTTP service (POST /v1/classify, Perspective and OpenAI compatible endpoints, /metrics, /admin).',
  usage: ['usage: toxscope serve [flags]', '', 'flags (each mirrors an environment variable; flags win):', configHelp()].join('\n'),
  run: (argv, io) => runService(argv, io),
};

/** serve and consume: start the service, run until SIGTERM or SIGINT, shut down gracefully. */
export async function runService(argv: string[], io: CliIO, options: StartOptions = {}): Promise<number> {
  const config = loadConfig({ env: process.env, argv });
  const log = createLogger(config.logLevel);
  const service = await startService(config, log, options);
  io.stderr(`toxscope: listening on ${service.url} (ready once the bundle is loaded: GET /readyz)\n`);
  const stopped = new Promise<number>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      service.shutdown(signal).then(() => {
        // Graceful shutdown is done. A first-start bundle build still running (CPU-bound, not cancellable)
        // would keep the process alive: exit shortly if anything does.
        setTimeout(() => process.exit(0), 1000).unref();
        resolve(0);
      }, (e) => {
        log.error('shutdown failed', { error: String((e as Error)?.stack ?? e) });
        resolve(1);
      });
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  const failed = service.ready.then(
    () => new Promise<number>(() => undefined),
    async (e) => {
      log.error(options.consume ? 'the service could not start (bundle or queue)' : 'the bundle could not be loaded', { error: (e as Error)?.message ?? String(e) });
      await service.shutdown('start failed');
      throw e;
    },
  );
  return Promise.race([stopped, failed]);
}
