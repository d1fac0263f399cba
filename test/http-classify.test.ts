import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTokenizer } from '../src/engine/tokenizer.js';
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

  it('returns every attribute of the bundle, or those asked for, each with its own threshold and driving sentence', async () => {
    const text = 'Danke für die Hilfe! Du bist ein dummer Idiot.';
    const body = await (await post(t.app, '/v1/classify', { texts: [text], language: 'de' })).json();
    const r = body.results[0];
    expect(Object.keys(r.attributes).sort()).toEqual(['identity_attack', 'insult', 'toxicity']);
    expect(r.attributes.toxicity).toMatchObject({ score: r.score, toxic: r.toxic, threshold: r.threshold });
    for (const a of Object.values(r.attributes) as { score: number; toxic: boolean; threshold: number; thresholds: string; span: { start: number; end: number } }[]) {
      expect(a.toxic).toBe(a.score >= a.threshold);
      expect(['de', 'pooled']).toContain(a.thresholds);
      expect(['Danke für die Hilfe!', 'Du bist ein dummer Idiot.', text]).toContain(text.slice(a.span.start, a.span.end));
    }
    expect(r.span).toEqual(r.attributes.toxicity.span);
    const only = (await (await post(t.app, '/v1/classify', { texts: [text], language: 'de', attributes: ['insult'] })).json()).results[0];
    expect(Object.keys(only.attributes).sort()).toEqual(['insult', 'toxicity']);
    expect(only.attributes.insult.score).toBeCloseTo(r.attributes.insult.score, 6);
    const bad = await post(t.app, '/v1/classify', { texts: [text], attributes: ['threat'] });
    expect(bad.status).toBe(422); // /v1/classify answers invalid content with 422, as for every other field
    expect((await bad.json()).error.message).toMatch(/unknown attribute threat: this bundle scores toxicity, identity_attack, insult/);
  });

  it('normalises before tokenizing: fullwidth, zero-width and spacing tricks score as the plain text, spans point into the original', async () => {
    const original = '\u200B ｙｏｕ  ａｒｅ ａｎ i\u200Bdiot';
    const [a, b] = (await (await post(t.app, '/v1/classify', { texts: [original, 'you are an idiot'], language: 'en', explain: true })).json()).results;
    expect(a.score).toBeCloseTo(b.score, 6);
    expect(a.tokens).toBe(b.tokens);
    for (const f of a.features) for (const s of f.spans) expect(original.slice(s.start, s.end).trim()).not.toBe('');
    expect(original.slice(a.span.start, a.span.end)).toBe('ｙｏｕ  ａｒｅ ａｎ i\u200Bdiot');
    const detected = (await (await post(t.app, '/v1/classify', { texts: ['ｙｏｕ ａｒｅ ａ ｃｏｍｐｌｅｔｅ ｉｄｉｏｔ ａｎｄ ｅｖｅｒｙｏｎｅ ｈａｔｅｓ ｙｏｕ'] })).json()).results[0];
    expect(detected.language.code).toBe('en');
    const empty = await post(t.app, '/v1/classify', { texts: ['fine', ''] });
    expect(empty.status).toBeGreaterThanOrEqual(400);
    expect(empty.status).toBeLessThan(500);
    for (const blank of ['   ', '\u0000\u0000', '\u200B\u200C\u200D', '\n\t\u3000']) {
      const res = await post(t.app, '/v1/classify', { texts: ['fine', blank] });
      expect(res.status, JSON.stringify(blank)).toBe(empty.status); // the same answer as ""'s
      expect((await res.json()).error.message).toMatch(/texts\[1\] has no visible characters/);
    }
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
    const direct = (await loadTokenizer()).encode(text).length; // the packaged Qwen3 tokenizer, as the tokenizer worker's
    expect(r.tokens).toBe(direct);
    expect(r.windows).toBe(Math.ceil((direct - 8) / (64 - 8)));
    for (const f of r.features) for (const s of f.spans) expect(s.end).toBeLessThanOrEqual(text.length);
  });
});
