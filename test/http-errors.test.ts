/**
 * Every malformed, oversized or badly timed request gets a 4xx/5xx with `{error: {kind, message}}` and
 * never an internal error: each case names what the service must answer.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, post, request, type JsonResponse, type TestApp } from './helpers/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
});
afterAll(() => t?.close());

async function expectError(res: JsonResponse, status: number, kind: string, message?: RegExp) {
  const body = await res.json();
  expect({ status: res.status, kind: body.error?.kind }).toEqual({ status, kind });
  expect(typeof body.error.message).toBe('string');
  expect(body.error.message.length).toBeGreaterThan(5);
  if (message) expect(body.error.message).toMatch(message);
  return body;
}

describe('malformed requests', () => {
  it('answers bad JSON with 400', async () => {
    await expectError(await post(t.app, '/v1/classify', '{"texts": ["a",'), 400, 'validation', /not valid JSON/);
    await expectError(await post(t.app, '/v1/classify', ''), 400, 'validation', /empty/);
  });

  it('answers a non-JSON content type with 400', async () => {
    const res = await request(t.app, '/v1/classify', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hello' });
    await expectError(res, 400, 'validation', /application\/json/);
  });

  it('answers a body that is not UTF-8 with 400', async () => {
    const bytes = new Uint8Array([0x7b, 0x22, 0x74, 0x65, 0x78, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x22, 0xff, 0xfe, 0x22, 0x5d, 0x7d]); // {"texts":["\xff\xfe"]}
    const res = await request(t.app, '/v1/classify', { method: 'POST', headers: { 'content-type': 'application/json' }, body: bytes });
    await expectError(res, 400, 'validation', /UTF-8/);
  });

  it('answers wrong types and unknown fields with 422 naming the field', async () => {
    await expectError(await post(t.app, '/v1/classify', { texts: 'just a string' }), 422, 'validation', /body\.texts/);
    await expectError(await post(t.app, '/v1/classify', { texts: ['ok', 42] }), 422, 'validation', /body\.texts\.1/);
    await expectError(await post(t.app, '/v1/classify', [1, 2]), 422, 'validation');
    await expectError(await post(t.app, '/v1/classify', { text: ['typo in the field name'] }), 422, 'validation', /text/);
    await expectError(await post(t.app, '/v1/classify', { texts: ['a'], explain: 'yes' }), 422, 'validation', /explain/);
    await expectError(await post(t.app, '/v1/classify', { texts: ['a'], language: 'english' }), 422, 'validation', /language/);
  });

  it('answers empty inputs with 422', async () => {
    await expectError(await post(t.app, '/v1/classify', { texts: [] }), 422, 'validation', /at least one/);
    await expectError(await post(t.app, '/v1/classify', { texts: ['fine', ''] }), 422, 'validation', /texts\[1\] is empty/);
  });

  it('answers lone surrogates (invalid UTF-16) with 422 and where they are', async () => {
    const res = await post(t.app, '/v1/classify', '{"texts": ["ok", "bad \\ud800 here"]}');
    await expectError(res, 422, 'validation', /texts\[1\].*lone surrogate at index 4/);
    const low = await post(t.app, '/v1/classify', '{"texts": ["\\udc00"]}');
    await expectError(low, 422, 'validation', /lone surrogate at index 0/);
  });

  it('answers a mismatched per-text language list with 422', async () => {
    await expectError(await post(t.app, '/v1/classify', { texts: ['a', 'b'], language: ['en'] }), 422, 'validation', /1 codes for 2 texts/);
  });

  it('answers an unknown route with 404', async () => {
    await expectError(await request(t.app, '/v2/classify', { method: 'POST' }), 404, 'not_found', /POST \/v2\/classify/);
  });
});

describe('oversized requests', () => {
  it('answers a 1 MB text with 413 naming the limit', async () => {
    const res = await post(t.app, '/v1/classify', { texts: ['a'.repeat(1_000_000)] });
    await expectError(res, 413, 'payload_too_large', /texts\[0\] has 1000000 characters, more than the limit of 20000/);
  });

  it('answers 10,000 texts with 413 naming the limit', async () => {
    const res = await post(t.app, '/v1/classify', { texts: Array.from({ length: 10_000 }, (_, i) => `text ${i}`) });
    await expectError(res, 413, 'payload_too_large', /10000 texts .* limit of 64/);
  });

  it('answers too many tokens in one request with 413', async () => {
    const text = 'word '.repeat(3000); // ~3000 tokens each, under the character limit
    await expectError(await post(t.app, '/v1/classify', { texts: [text, text, text] }), 413, 'payload_too_large', /tokens together.*8192/);
  });

  it('answers a body over the byte limit with 413 before reading it', async () => {
    const small = await buildTestApp({ env: { TOXSCOPE_MAX_BODY_BYTES: '2048' } });
    try {
      await expectError(await post(small.app, '/v1/classify', { texts: ['x'.repeat(5000)] }), 413, 'payload_too_large', /2048 bytes/);
    } finally {
      await small.close();
    }
  });
});

describe('overload, deadlines and readiness', () => {
  it('fails fast with 429 and Retry-After when the queue is full, and serves what it admitted', async () => {
    // The first request's windows wait for company (max wait 1 s); the queue holds 3 windows.
    const busy = await buildTestApp({ env: { TOXSCOPE_QUEUE_CAPACITY: '3', TOXSCOPE_MAX_WAIT_MS: '1000' } });
    try {
      const first = post(busy.app, '/v1/classify', { texts: ['first text', 'second text'], language: 'en' });
      // its two windows wait in the queue once the tokenizer worker has handed them over
      for (let i = 0; i < 10_000 && busy.host.current().classifier.queueDepth < 2; i++) await new Promise((r) => setTimeout(r, 1));
      expect(busy.host.current().classifier.queueDepth).toBe(2);
      const second = await post(busy.app, '/v1/classify', { texts: ['third text', 'fourth text'], language: 'en' });
      const body = await expectError(second, 429, 'overloaded', /queue full/);
      expect(Number(second.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(body.error.status).toBe('RESOURCE_EXHAUSTED');
      expect((await first).status).toBe(200);
    } finally {
      await busy.close();
    }
  });

  it('answers 504 when a request outlives its deadline', async () => {
    const slow = await buildTestApp({ env: { TOXSCOPE_REQUEST_TIMEOUT_MS: '30', TOXSCOPE_MAX_WAIT_MS: '1000' } });
    try {
      await expectError(await post(slow.app, '/v1/classify', { texts: ['waits too long'] }), 504, 'timeout', /30 ms/);
    } finally {
      await slow.close();
    }
  });

  it('answers 503 with Retry-After before the model is warm', async () => {
    const cold = await buildTestApp({ notReady: true });
    try {
      const res = await post(cold.app, '/v1/classify', { texts: ['hello'] });
      await expectError(res, 503, 'unavailable', /loading/);
      expect(res.headers.get('retry-after')).toBeTruthy();
      await expectError(await request(cold.app, '/readyz'), 503, 'unavailable');
      expect((await request(cold.app, '/healthz')).status).toBe(200);
    } finally {
      await cold.close();
    }
  });
});
