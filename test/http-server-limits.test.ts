/**
 * Issue #10 item 7: the listener's guards against slow and many clients (src/http/server.ts), on a real
 * socket: a request whose headers or body do not arrive in time is cut off instead of being held for Node's
 * default 300 s, and connections beyond the cap are closed at once.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listen, type Listening } from '../src/http/server.js';
import { buildTestApp, type TestApp } from './helpers/app.js';

/** Resolves with what the server sent once it closes the socket; rejects if it is still open after `ms`. */
function closedWithin(socket: Socket, ms: number): Promise<string> {
  let got = '';
  socket.on('data', (d) => (got += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`socket still open after ${ms} ms`)), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
  });
}

const open = (port: number) =>
  new Promise<Socket>((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });

describe('the HTTP listener', () => {
  let t: TestApp;
  let l: Listening;
  beforeAll(async () => {
    t = await buildTestApp({ env: { TOXSCOPE_HEADERS_TIMEOUT_MS: '400', TOXSCOPE_UPLOAD_TIMEOUT_MS: '800', TOXSCOPE_MAX_CONNECTIONS: '3' } });
    l = await listen(t.app, { port: 0, host: '127.0.0.1', server: t.config.server });
  });
  afterAll(async () => {
    if (l && 'closeAllConnections' in l.server) l.server.closeAllConnections();
    await new Promise((r) => l?.server.close(r));
    await t?.close();
  });

  it('reads its guards from the configuration, with defaults far below Node\'s 300 s', async () => {
    const { loadConfig } = await import('../src/config.js');
    expect(loadConfig({}).server).toEqual({ headersTimeoutMs: 10_000, uploadTimeoutMs: 30_000, maxConnections: 1024 });
  });

  it('closes a connection whose headers never finish (slowloris)', async () => {
    const s = await open(l.port);
    s.write('POST /v1/classify HTTP/1.1\r\nHost: x\r\nX-Slow: ');
    const drip = setInterval(() => s.writable && s.write('a'), 100);
    try {
      await closedWithin(s, 10_000);
    } finally {
      clearInterval(drip);
    }
  });

  it('answers 408 and closes a request whose body trickles in too slowly', async () => {
    const s = await open(l.port);
    s.write('POST /v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"items": [');
    const drip = setInterval(() => s.writable && s.write(' '), 100);
    try {
      expect(await closedWithin(s, 10_000)).toMatch(/^HTTP\/1\.1 408/);
    } finally {
      clearInterval(drip);
    }
  });

  it('closes connections beyond the cap at once, and serves again once they are gone', async () => {
    const held = await Promise.all([open(l.port), open(l.port), open(l.port)]);
    const extra = await open(l.port);
    await closedWithin(extra, 5_000);
    for (const s of held) s.destroy();
    await new Promise((r) => setTimeout(r, 100));
    const res = await fetch(`http://127.0.0.1:${l.port}/healthz`);
    expect(res.status).toBe(200);
  });
});
