/**
 * `toxscope consume [flags]`: the service with a NATS JetStream consumer beside HTTP (same bundle, thresholds,
 * write queue, drift, /metrics, /healthz, /readyz, admin). Run any number of replicas: they share one durable
 * consumer. Runs until SIGTERM or SIGINT, then stops fetching, finishes and acknowledges what it holds, drains.
 */
import { configHelp } from '../config.js';
import type { Command } from './main.js';
import { runService } from './serve.js';

export const consumeCommand: Command = {
  name: 'consume',
  summary: 'Classify requests from a NATS JetStream stream (a durable pull consumer shared by replicas), beside the HTTP service.',
  usage: ['usage: toxscope consume [flags]', '', 'flags (each mirrors an environment variable; flags win; TOXSCOPE_NATS_* configure the queue):', configHelp()].join('\n'),
  run: (argv, io) => runService(argv, io, { consume: true }),
};
