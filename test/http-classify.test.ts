import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, post, type TestApp } from './helpers/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
});
afterAll(() => t?.close());

describe('POST /v1/classify', () => {
  it('scores each text with a prediction id, threshold, language and timings', async () => {
    const res = await post(t.app, '/v1/classify', { texts: ['You are a complete idiot and everyone hates you', 'Danke für die schnelle Hilfe, das war super nett!'] });
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body.bundle_version).toBe('tiny-v1');
    expect(body.results).toHaveLength(2);
    for (const r of body.results) {
      expect(r.id).toMatch(/^[0-9a-f-]{36}$/);
      expect(r.score).toBeGreaterThanOrEqual(0);
      expect(r.score).toBeLessThanOrEqual(1);
      expect(r.toxic).toBe(r.score >= r.threshold);
      expect(r.tokens).toBeGreaterThan(3);
      expect(r.windows).toBe(1);
    }
    expect(body.results[0].language).toMatchObject({ code: 'en', source: 'detected' });
    expect(body.results[1].language).toMatchObject({ code: 'de', source: 'detected' });
    expect(body.results[0].id).not.toBe(body.results[1].id);
    expect(Object.keys(body.timings).sort()).toEqual(['inference_ms', 'queue_ms', 'tokenize_ms', 'total_ms']);
    expect(res.headers.get('server-timing')).toMatch(/tokenize;dur=[\d.]+, queue;dur=[\d.]+, inference;dur=[\d.]+, total;dur=[\d.]+/);
    expect(res.headers.get('x-request-id')).toBeTruthy();
  });

  it('says, in the body and in a header of every scoring endpoint, when the bundle runs a synthetic backbone', async () => {
    const res = await post(t.app, '/v1/classify', { texts: ['hello there'] });
    const body = await res.json();
    expect(body.synthetic_backbone).toBe(true);
    expect(body.notice).toMatch(/pipeline/);
    expect(res.headers.get('x-toxscope-synthetic-backbone')).toMatch(/^true/);
    const moderation = await post(t.app, '/v1/moderations', { input: 'hello there' });
    expect(moderation.headers.get('x-toxscope-synthetic-backbone')).toMatch(/^true/);
    const perspective = await post(t.app, '/v1alpha1/comments:analyze', { comment: { text: 'hello there' }, requestedAttributes: { TOXICITY: {} } });
    expect(perspective.headers.get('x-toxscope-synthetic-backbone')).toMatch(/^true/);
  });

  it('gives the same score for a text alone or in a batch with others (padding does not leak)', async () => {
    const text = 'what a stupid thing to say';
    const alone = (await (await post(t.app, '/v1/classify', { texts: [text], language: 'en' })).json()).results[0].score;
    const inBatch = await (await post(t.app, '/v1/classify', { texts: ['a much longer text that forces padding of the shorter row in the batch', text], language: 'en' })).json();
    expect(inBatch.results[1].score).toBeCloseTo(alone, 5);
  });

  it('uses a language hint for all texts or per text, and says where the language came from', async () => {
    const one = await (await post(t.app, '/v1/classify', { texts: ['hello there', 'bonjour'], language: 'de' })).json();
    expect(one.results.map((r: any) => r.language)).toEqual([
      { code: 'de', source: 'hint', thresholds: expect.any(String) },
      { code: 'de', source: 'hint', thresholds: expect.any(String) },
    ]);
    const per = await (await post(t.app, '/v1/classify', { texts: ['hello there friend', 'Guten Morgen, wie geht es dir heute?'], language: ['EN-us', null] })).json();
    expect(per.results[0].language).toMatchObject({ code: 'en', source: 'hint' });
    expect(per.results[1].language).toMatchObject({ code: 'de', source: 'detected' });
  });

  it('falls back to the pooled threshold for an unsupported or unknown language and says so', async () => {
    const body = await (await post(t.app, '/v1/classify', { texts: ['some text', '🙂🙂🙂'], language: ['xx', null] })).json();
    const pooled = t.host.current().classifier.head.thresholds.pooled;
    expect(body.results[0].language).toEqual({ code: 'xx', source: 'hint', thresholds: 'pooled' });
    expect(body.results[0].threshold).toBe(pooled);
    expect(body.results[1].language).toMatchObject({ code: 'und', source: 'fallback', thresholds: 'pooled' });
  });

  it('uses the language its own threshold when the head has one', async () => {
    const head = t.host.current().classifier.head;
    const langs = Object.keys(head.thresholds.perLanguage);
    expect(langs.length).toBeGreaterThan(0);
    const lang = langs[0];
    const body = await (await post(t.app, '/v1/classify', { texts: ['some words here'], language: lang })).json();
    expect(body.results[0].language.thresholds).toBe(lang);
    expect(body.results[0].threshold).toBe(head.thresholds.perLanguage[lang]);
  });

  it('explains with top features whose spans point at the characters where they fired', async () => {
    const text = 'You are an idiot. 😀 Ты идиот!';
    const body = await (await post(t.app, '/v1/classify', { texts: [text], explain: true, top_features: 3 })).json();
    const features = body.results[0].features;
    expect(features.length).toBeGreaterThan(0);
    expect(features.length).toBeLessThanOrEqual(3);
    for (const f of features) {
      expect(Number.isInteger(f.id)).toBe(true);
      expect(f.firing_rate).toBeGreaterThan(0);
      expect(f.firing_rate).toBeLessThanOrEqual(1);
      expect(f.spans.length).toBeGreaterThan(0);
      for (const s of f.spans) {
        expect(0 <= s.start && s.start < s.end && s.end <= text.length).toBe(true);
        expect(text.slice(s.start, s.end).trim().length).toBeGreaterThan(0);
      }
    }
    const mags = features.map((f: any) => Math.abs(f.contribution));
    expect(mags).toEqual([...mags].sort((a, b) => b - a));
  });

  it('splits a long text into windows and counts each token once', async () => {
    const text = Array.from({ length: 60 }, (_, i) => `sentence number ${i} is here.`).join(' ');
    const body = await (await post(t.app, '/v1/classify', { texts: [text], language: 'en', explain: true })).json();
    const r = body.results[0];
    const direct = (t.host.current().classifier as any).parts.tokenizer.encode(text).length;
    expect(r.tokens).toBe(direct);
    expect(r.windows).toBe(Math.ceil((direct - 8) / (64 - 8)));
    for (const f of r.features) for (const s of f.spans) expect(s.end).toBeLessThanOrEqual(text.length);
  });
});
