/** Drop-in compatibility: Google Perspective API request/response shapes (every attribute the bundle has) and the official OpenAI SDK. */
import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPENAI_CATEGORIES } from '../src/http/schemas.js';
import { buildTestApp, post, type TestApp } from './helpers/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
});
afterAll(() => t?.close());

const classify = async (text: string, language?: string) =>
  (await (await post(t.app, '/v1/classify', { texts: [text], ...(language && { language }) })).json()).results[0];

describe('POST /v1alpha1/comments:analyze (Perspective API)', () => {
  it('answers a minimal Perspective request with the TOXICITY summary score and a whole-text span', async () => {
    const text = 'You are such an idiot, seriously.';
    const res = await post(t.app, '/v1alpha1/comments:analyze', { comment: { text }, requestedAttributes: { TOXICITY: {} } });
    expect(res.status).toBe(200);
    const body = await res.json();
    const ours = await classify(text);
    expect(body).toEqual({
      attributeScores: {
        TOXICITY: {
          spanScores: [{ begin: 0, end: text.length, score: { value: ours.score, type: 'PROBABILITY' } }],
          summaryScore: { value: ours.score, type: 'PROBABILITY' },
        },
      },
      languages: ['en'],
      detectedLanguages: ['en'],
    });
  });

  it('uses the given languages, echoes clientToken and scores sentences with spanAnnotations', async () => {
    const text = 'Das ist ein schöner Tag. Du bist ein Idiot! Wir sehen uns morgen.';
    const res = await post(t.app, '/v1alpha1/comments:analyze', {
      comment: { text, type: 'PLAIN_TEXT' },
      requestedAttributes: { TOXICITY: { scoreType: 'PROBABILITY' } },
      languages: ['de'],
      spanAnnotations: true,
      doNotStore: true,
      clientToken: 'abc-123',
      sessionId: 'ignored',
    });
    const body = await res.json();
    expect(body.languages).toEqual(['de']);
    expect(body.detectedLanguages).toBeUndefined();
    expect(body.clientToken).toBe('abc-123');
    const spans = body.attributeScores.TOXICITY.spanScores;
    expect(spans.map((s: any) => text.slice(s.begin, s.end))).toEqual(['Das ist ein schöner Tag.', 'Du bist ein Idiot!', 'Wir sehen uns morgen.']);
    for (const s of spans) expect(s.score.value).toBeCloseTo((await classify(text.slice(s.begin, s.end), 'de')).score, 6);
    expect(body.attributeScores.TOXICITY.summaryScore.value).toBeCloseTo((await classify(text, 'de')).score, 6);
  });

  it('groups the sentences of a long comment so spanAnnotations never exceed the per-request text limit', async () => {
    const text = Array.from({ length: 150 }, (_, i) => `Sentence number ${i} is here.`).join(' '); // 150 sentences, limit 64 texts
    const res = await post(t.app, '/v1alpha1/comments:analyze', { comment: { text }, requestedAttributes: { TOXICITY: {} }, languages: ['en'], spanAnnotations: true, doNotStore: true });
    expect(res.status).toBe(200);
    const spans = (await res.json()).attributeScores.TOXICITY.spanScores as { begin: number; end: number }[];
    expect(spans.length).toBe(63); // 1 + 63 texts = TOXSCOPE_MAX_TEXTS in the test config
    expect(spans[0].begin).toBe(0);
    expect(spans[spans.length - 1].end).toBe(text.length);
    for (let i = 1; i < spans.length; i++) expect(spans[i].begin).toBeGreaterThanOrEqual(spans[i - 1].end);
  });

  it('accepts the proto (snake_case) field names that Google JSON mapping allows, as Perspective clients send them', async () => {
    const text = 'Du bist ein Idiot! Wir sehen uns morgen.';
    const res = await post(t.app, '/v1alpha1/comments:analyze', {
      comment: { text },
      requested_attributes: { TOXICITY: { score_type: 'PROBABILITY' } },
      languages: ['de'],
      span_annotations: true,
      do_not_store: true,
      client_token: 'tok-1',
    });
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body.clientToken).toBe('tok-1');
    expect(body.attributeScores.TOXICITY.spanScores).toHaveLength(2);
    expect(body.attributeScores.TOXICITY.summaryScore.value).toBeCloseTo((await classify(text, 'de')).score, 6);
  });

  it('serves every requested attribute the bundle has, each from its own head, and leaves out the ones it does not score', async () => {
    const text = 'Ihr seid dumme Idioten und Versager.';
    const res = await post(t.app, '/v1alpha1/comments:analyze', {
      comment: { text }, languages: ['de'],
      requestedAttributes: { TOXICITY: {}, INSULT: {}, IDENTITY_ATTACK: {}, SEVERE_TOXICITY: {}, THREAT: {} },
    });
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(Object.keys(body.attributeScores).sort()).toEqual(['IDENTITY_ATTACK', 'INSULT', 'TOXICITY']);
    const ours = (await (await post(t.app, '/v1/classify', { texts: [text], language: 'de' })).json()).results[0];
    for (const [name, attribute] of [['TOXICITY', 'toxicity'], ['INSULT', 'insult'], ['IDENTITY_ATTACK', 'identity_attack']]) {
      expect(body.attributeScores[name].summaryScore).toEqual({ value: expect.any(Number), type: 'PROBABILITY' });
      expect(body.attributeScores[name].summaryScore.value).toBeCloseTo(ours.attributes[attribute].score, 6);
      expect(body.attributeScores[name].spanScores).toEqual([{ begin: 0, end: text.length, score: body.attributeScores[name].summaryScore }]);
    }
    expect(body.attributeScores.INSULT.summaryScore.value).not.toBeCloseTo(body.attributeScores.TOXICITY.summaryScore.value, 6);
  });

  it('refuses with 400, like Perspective for an unknown attribute, only when none of the requested attributes is available', async () => {
    const res = await post(t.app, '/v1alpha1/comments:analyze', { comment: { text: 'hi' }, requestedAttributes: { SEVERE_TOXICITY: {}, THREAT: {} } });
    expect(res.status).toBe(400);
    const err = (await res.json()).error;
    expect(err.message).toMatch(/SEVERE_TOXICITY, THREAT are not supported by this service \(supported: TOXICITY, IDENTITY_ATTACK, INSULT\)/);
    expect(err.status).toBe('INVALID_ARGUMENT');
    const dropped = await post(t.app, '/v1alpha1/comments:analyze', {
      comment: { text: 'hello friends' },
      requestedAttributes: { THREAT: {} },
      dropUnsupportedAttributes: true,
    });
    expect(dropped.status).toBe(200);
    expect((await dropped.json()).attributeScores).toEqual({});
  });

  it('gives per-sentence span scores for every served attribute with spanAnnotations', async () => {
    const text = 'Danke für die Hilfe. Du bist ein dummer Idiot.';
    const res = await post(t.app, '/v1alpha1/comments:analyze', { comment: { text }, languages: ['de'], spanAnnotations: true, requestedAttributes: { INSULT: {}, TOXICITY: {} } });
    const body = await res.json();
    for (const name of ['INSULT', 'TOXICITY']) {
      const spans = body.attributeScores[name].spanScores;
      expect(spans.map((s: { begin: number; end: number }) => text.slice(s.begin, s.end))).toEqual(['Danke für die Hilfe.', 'Du bist ein dummer Idiot.']);
    }
  });

  it('answers malformed Perspective requests with 400', async () => {
    for (const body of [
      { comment: { text: '' }, requestedAttributes: { TOXICITY: {} } },
      { comment: { text: 'x' }, requestedAttributes: {} },
      { comment: 'x', requestedAttributes: { TOXICITY: {} } },
      { comment: { text: 'x' }, requestedAttributes: { TOXICITY: { scoreType: 'STD_DEV_SCORE' } } },
    ]) {
      const res = await post(t.app, '/v1alpha1/comments:analyze', body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect((await res.json()).error.message.length).toBeGreaterThan(5);
    }
  });

  it('leaves out the attribute when its score is below scoreThreshold', async () => {
    const res = await post(t.app, '/v1alpha1/comments:analyze', { comment: { text: 'hello' }, requestedAttributes: { TOXICITY: { scoreThreshold: 1 } } });
    expect((await res.json()).attributeScores).toEqual({});
  });
});

describe('POST /v1/moderations with the official openai SDK', () => {
  let server: ServerType;
  let client: OpenAI;
  beforeAll(async () => {
    server = serve({ fetch: t.app.fetch, port: 0, hostname: '127.0.0.1' });
    await new Promise((r) => server.once('listening', r));
    const { port } = server.address() as AddressInfo;
    client = new OpenAI({ apiKey: 'not-needed', baseURL: `http://127.0.0.1:${port}/v1`, maxRetries: 0 });
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('works unchanged: every OpenAI category present, toxicity under harassment, identity_attack under hate, the rest unscored', async () => {
    const inputs = ['You are a worthless idiot', 'Thanks, have a great day!'];
    const res = await client.moderations.create({ model: 'omni-moderation-latest', input: inputs });
    expect(res.id).toMatch(/^modr-/);
    expect(res.model).toBe('omni-moderation-latest');
    expect(res.results).toHaveLength(2);
    for (const [i, r] of res.results.entries()) {
      const ours = await classify(inputs[i]);
      expect(Object.keys(r.categories).sort()).toEqual([...OPENAI_CATEGORIES].sort());
      expect(Object.keys(r.category_scores).sort()).toEqual([...OPENAI_CATEGORIES].sort());
      expect(r.flagged).toBe(ours.toxic || ours.attributes.identity_attack.toxic);
      expect(r.category_scores.harassment).toBeCloseTo(ours.score, 6);
      expect(r.category_scores.hate).toBeCloseTo(ours.attributes.identity_attack.score, 6);
      expect(r.categories.harassment).toBe(ours.toxic);
      expect(r.categories.hate).toBe(ours.attributes.identity_attack.toxic);
      for (const unscored of OPENAI_CATEGORIES.filter((c) => c !== 'harassment' && c !== 'hate')) {
        expect(r.categories[unscored as keyof typeof r.categories]).toBe(false);
        expect(r.category_scores[unscored as keyof typeof r.category_scores]).toBe(0);
      }
      expect(r.categories.violence).toBe(false);
      expect(r.category_scores['self-harm']).toBe(0);
    }
  });

  it('accepts a single string and text parts, and surfaces our errors as SDK errors', async () => {
    const one = await client.moderations.create({ input: 'hello world' });
    expect(one.results).toHaveLength(1);
    const parts = await client.moderations.create({ model: 'omni-moderation-latest', input: [{ type: 'text', text: 'hello world' }] });
    expect(parts.results[0].category_scores.harassment).toBeCloseTo(one.results[0].category_scores.harassment, 6);
    await expect(client.moderations.create({ input: [{ type: 'image_url', image_url: { url: 'https://example.com/x.png' } }] })).rejects.toMatchObject({
      status: 400,
      message: expect.stringMatching(/image inputs are not supported/),
    });
  });

  it("answers errors in OpenAI's shape with the caller's field names: the SDK raises BadRequestError with param", async () => {
    const err = await client.moderations.create({ input: '' }).catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(err.status).toBe(400);
    expect(err.error).toEqual({ message: 'input is empty', type: 'invalid_request_error', param: 'input', code: 'invalid_value' });
    const second = await client.moderations.create({ input: ['fine', ''] }).catch((e) => e);
    expect(second.error).toMatchObject({ message: 'input[1] is empty', param: 'input[1]', type: 'invalid_request_error' });
    const typed = await client.moderations.create({ input: 42 as unknown as string }).catch((e) => e);
    expect(typed).toBeInstanceOf(OpenAI.BadRequestError);
    expect(typed.error.param).toBe('input');
    expect(typed.error.message).not.toMatch(/texts|body\./);
    const long = await client.moderations.create({ input: 'x'.repeat(t.config.limits.maxCharsPerText + 1) }).catch((e) => e);
    expect(long).toBeInstanceOf(OpenAI.BadRequestError);
    expect(long.error).toMatchObject({ type: 'invalid_request_error', param: 'input', code: 'input_too_large' });
    const malformed = await post(t.app, '/v1/moderations', '{"input": ');
    expect(malformed.status).toBe(400);
    expect((await malformed.json()).error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_json', param: null });
  });
});

describe('errors in each API\'s own shape', () => {
  it("Perspective: Google's {code, message, status}, 400 INVALID_ARGUMENT, comment.text named, COMMENT_TOO_LONG", async () => {
    const empty = await post(t.app, '/v1alpha1/comments:analyze', { comment: { text: '' }, requestedAttributes: { TOXICITY: {} } });
    expect(empty.status).toBe(400);
    expect(await empty.json()).toEqual({ error: { code: 400, message: 'comment.text must be non-empty', status: 'INVALID_ARGUMENT' } });
    const lone = await post(t.app, '/v1alpha1/comments:analyze', '{"comment": {"text": "bad \\ud800"}, "requestedAttributes": {"TOXICITY": {}}}');
    const loneBody = await lone.json();
    expect(lone.status).toBe(400);
    expect(loneBody.error.message).toMatch(/^comment\.text is not valid UTF-16/);
    const long = await post(t.app, '/v1alpha1/comments:analyze', { comment: { text: 'x'.repeat(t.config.limits.maxCharsPerText + 1) }, requestedAttributes: { TOXICITY: {} } });
    expect(long.status).toBe(400);
    const longBody = await long.json();
    expect(longBody.error).toMatchObject({ code: 400, status: 'INVALID_ARGUMENT', details: [{ errorType: 'COMMENT_TOO_LONG' }] });
    expect(longBody.error.message).toMatch(/^comment\.text has/);
    const wrong = await post(t.app, '/v1alpha1/comments:analyze', { comment: 'x', requestedAttributes: { TOXICITY: {} } });
    expect((await wrong.json()).error.message).toMatch(/^comment:/);
  });

  it('native: unchanged, {kind, message, code, status} with 422 for a well-formed body that fails validation', async () => {
    const res = await post(t.app, '/v1/classify', { texts: [''] });
    expect(res.status).toBe(422);
    expect((await res.json()).error).toEqual({ kind: 'validation', message: 'texts[0] is empty', code: 422, status: 'INVALID_ARGUMENT' });
    const big = await post(t.app, '/v1/classify', { texts: ['x'.repeat(t.config.limits.maxCharsPerText + 1)] });
    expect(big.status).toBe(413);
  });
});
