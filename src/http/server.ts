/**
 * Binding the app to a port, with the listener's own guards (Node's defaults hold a slow upload for 300 s and
 * take any number of connections):
 *
 *   headersTimeout  a request's headers must arrive within TOXSCOPE_HEADERS_TIMEOUT_MS (slowloris)
 *   requestTimeout  the whole request, body included, within TOXSCOPE_UPLOAD_TIMEOUT_MS (408, closed)
 *   maxConnections  at most TOXSCOPE_MAX_CONNECTIONS open sockets; further ones are closed at once
 *
 * Node checks the two timeouts every connectionsCheckingInterval (30 s by default): here a quarter of the
 * shorter one, so that they hold to within about 25 %. Time spent answering is the request deadline's
 * (TOXSCOPE_REQUEST_TIMEOUT_MS), not these.
 */
import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import type { Hono } from 'hono';
import type { ServerConfig } from '../config.js';

export interface Listening {
  server: ServerType;
  port: number;
}

export async function listen(app: Pick<Hono, 'fetch'>, { port, host, server: guards }: { port: number; host: string; server: ServerConfig }): Promise<Listening> {
  const checkEvery = Math.max(50, Math.floor(Math.min(guards.headersTimeoutMs, guards.uploadTimeoutMs) / 4));
  const server = serve({
    fetch: app.fetch,
    port,
    hostname: host,
    serverOptions: {
      headersTimeout: guards.headersTimeoutMs,
      // Node requires requestTimeout >= headersTimeout when both are set
      requestTimeout: Math.max(guards.uploadTimeoutMs, guards.headersTimeoutMs),
      connectionsCheckingInterval: checkEvery,
    },
  });
  server.maxConnections = guards.maxConnections;
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  return { server, port: (server.address() as AddressInfo).port };
}
