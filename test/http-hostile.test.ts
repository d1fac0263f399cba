/**
 * Issue #10 items 1 and 4: small or hostile inputs get a 4xx with a message, never a 500, and budgets are
 * enforced before the expensive work. In-process through app.request, except the mid-upload disconnect, which
 * needs a real socket.
 */
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TextWorker } from '../src/engine/text-worker.js';
import { ADMIN_TOKEN, buildTestApp, post, request, type JsonResponse, type TestApp } from './helpers/app.js';

async function expectError(res: JsonResponse, status: number, pattern: RegExp) {
  const body = await res.json();
  expect({ status: res.status, message: body.error?.message }).toEqual({ status, message: expect.stringMatching(pattern) });
}

const nested = (depth: number) => '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);

describe('hostile and malformed requests', () => {
  let t: TestApp;
  const logged: { level: string; msg: string }[] = [];
  beforeAll(async () => {
    const at = (level: string) => (msg: string) => void logged.push({ level, msg });
    t = await buildTestApp({ env: { TOXSCOPE_ADMIN_TOKEN: ADMIN_TOKEN, TOXSCOPE_MAX_BATCH_TOKENS: '64' }, deps: { log: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } } });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('answers 5,000-deep JSON nesting in a Perspective request with 400, not a stack overflow', async () => {
    const body = `{"comment": {"text": "hello"}, "requested_attributes": {"TOXICITY": {}}, "context": ${nested(5000)}}`;
    await expectError(await post(t.app, '/v1alpha1/comments:analyze', body), 400, /nests deeper than 32 levels/);
    // every JSON endpoint refuses it the same way, before parsing
    await expectError(await post(t.app, '/v1/classify', `{"texts": [${'['.repeat(100_000)}`), 400, /nests deeper than 32 levels/);
  });

  it('refuses a body of more JSON values than any request needs, before parsing it', async () => {
    await expectError(await post(t.app, '/v1/feedback', `{"items": [${'{},'.repeat(30_000)}{}]}`), 413, /more than 20000 JSON values/);
  });

  it('refuses NUL characters and lone surrogates in feedback ids and sources at validation', async () => {
    await expectError(await post(t.app, '/v1/feedback', { items: [{ id: 'abc\u0000def', label: 1 }] }), 422, /items\.0\.id: must not contain NUL/);
    await expectError(await post(t.app, '/v1/feedback', { items: [{ id: 'abc', label: 1 }], source: 'moderator\u0000' }), 422, /source: must not contain NUL/);
    await expectError(await post(t.app, '/v1/feedback', '{"items": [{"id": "ab\\ud800c", "label": 0}]}'), 422, /items\.0\.id: must be valid UTF-16/);
  });

  it('refuses NUL characters in an audited threshold change', async () => {
    const res = await request(t.app, '/admin/thresholds', {
      method: 'PUT',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ thresholds: { en: 0.5 }, actor: 'a\u0000b' }),
    });
    await expectError(res, 422, /actor: must not contain NUL/);
  });

  it('answers a malformed multipart body on the admin page with 400', async () => {
    const multipart = { 'content-type': 'multipart/form-data; boundary=XyZ', origin: 'http://localhost' };
    const garbage = '--XyZ\r\nContent-Disposition: form-data; name="token"\r\n\r\nabc'; // no closing boundary
    const login = await request(t.app, 'http://localhost/admin/ui/login', { method: 'POST', headers: multipart, body: garbage });
    await expectError(login, 400, /Malformed FormData/);
    const thresholds = await request(t.app, 'http://localhost/admin/ui/thresholds', {
      method: 'POST',
      headers: { ...multipart, authorization: `Bearer ${ADMIN_TOKEN}` },
      body: '\u0000\u0001 not multipart at all',
    });
    await expectError(thresholds, 400, /Malformed FormData/);
    // a well-formed one still works
    const form = new FormData();
    form.set('token', ADMIN_TOKEN);
    const ok = await request(t.app, 'http://localhost/admin/ui/login', { method: 'POST', headers: { origin: 'http://localhost' }, body: form });
    expect(ok.status).toBe(303);
  });

  it('refuses a request over the token budget with 413 (tokenized within the budget, never whole)', async () => {
    const long = 'word and another word, '.repeat(860); // ~20,000 characters, about 5,000 tokens
    const text = (t.host.current().classifier as unknown as { parts: { text: TextWorker } }).parts.text;
    const before = await text.stats();
    await expectError(await post(t.app, '/v1/classify', { texts: Array(10).fill(long) }), 413, /more tokens together than the limit of 8192 per request/);
    const after = await text.stats();
    // on the tokenizer worker's thread (not the event loop's), and only up to the budget: about 8,192 of 50,000 tokens
    expect(after.threadId).not.toBe(0);
    expect(after.requests - before.requests).toBe(1);
    expect(after.chars - before.chars).toBeGreaterThan(0);
    expect(after.chars - before.chars).toBeLessThan(0.3 * 10 * long.length);
  });

  it('answers a short request sent after a long accepted one first: requests take turns on the tokenizer and the engine', async () => {
    const order: string[] = [];
    // one word of 20,000 characters (the test limit): about 2,500 tokens, ~45 windows of 64 tokens
    const long = post(t.app, '/v1/classify', { texts: ['a'.repeat(20_000)] }).then(async (r) => (order.push('long'), r));
    // the short one arrives once the long one's windows wait for the engine (one window per forward pass here)
    for (let i = 0; i < 10_000 && t.host.current().classifier.queueDepth === 0; i++) await new Promise((r) => setTimeout(r, 1));
    expect(t.host.current().classifier.queueDepth).toBeGreaterThan(10);
    let waitingWhenShortAnswered = -1;
    const short = post(t.app, '/v1/classify', { texts: ['have a nice day'] }).then(async (r) => {
      waitingWhenShortAnswered = t.host.current().classifier.queueDepth;
      order.push('short');
      return r;
    });
    const [l, sh] = await Promise.all([long, short]);
    expect([l.status, sh.status]).toEqual([200, 200]);
    expect((await l.json()).results[0].windows).toBeGreaterThan(40);
    expect(order).toEqual(['short', 'long']);
    expect(waitingWhenShortAnswered).toBeGreaterThan(10); // most of the long text's windows were still waiting
  });

  it('admits a long unpunctuated text whose parts outnumber the queue capacity: a part counts its share of a window', async () => {
    const small = await buildTestApp({ env: { TOXSCOPE_ADMIN_TOKEN: ADMIN_TOKEN, TOXSCOPE_MAX_BATCH_TOKENS: '64', TOXSCOPE_QUEUE_CAPACITY: '100' } });
    try {
      let peak = 0;
      const long = post(small.app, '/v1/classify', { texts: ['a'.repeat(8_000)] });
      const watch = setInterval(() => (peak = Math.max(peak, small.host.current().classifier.queueDepth)), 1);
      const r = await long;
      clearInterval(watch);
      expect(r.status).toBe(200); // was 429 "queue full (0 of 100 waiting, ... more asked)" for ever: it never fit
      expect(peak).toBeGreaterThan(100); // more items (windows + 16-token parts) waited than the capacity counts
    } finally {
      await small.close();
    }
  });

  it('does not count or log a client that disconnects mid-upload as a server error', async () => {
    const server = serve({ fetch: t.app.fetch, port: 0, hostname: '127.0.0.1' });
    await new Promise<void>((r) => server.once('listening', () => r()));
    const { port } = server.address() as AddressInfo;
    try {
      const socket = connect(port, '127.0.0.1');
      await new Promise<void>((r) => socket.once('connect', () => r()));
      socket.write(`POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"texts": ["${'a'.repeat(5000)}`);
      await new Promise((r) => setTimeout(r, 100));
      socket.destroy();
      // the server notices, the request ends: wait for its metric
      const seen = async () => /toxscope_http_requests_total\{route="\/v1\/classify",method="POST",status="499"\} 1/.test(await t.metrics.render());
      for (let i = 0; i < 100 && !(await seen()); i++) await new Promise((r) => setTimeout(r, 50));
      expect(await seen()).toBe(true);
      expect(await t.metrics.render()).not.toMatch(/status="500"/);
      expect(logged.filter((l) => l.level === 'error')).toEqual([]);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
