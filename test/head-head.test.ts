import { describe, expect, it } from 'vitest';
import { Head } from '../src/head/head.js';
import { FeatureTransform } from '../src/head/features.js';
import { sigmoid } from '../src/head/logistic.js';
import { seededRandom } from '../src/util/random.js';
import { isToxScopeError } from '../src/errors.js';
import { gaussian, plantedTexts, textFeatures } from './head-synthetic.js';

const dSae = 64;

/** A head with random weights over a fitted transform, own calibration and threshold for 'en'. */
function tinyHead(options: { language?: boolean } = {}): Head {
  const data = plantedTexts({ n: 200, dSae, background: 6, toxicFeatures: [3], pPlanted: 0.8, pLeak: 0.1, langs: ['en', 'fr'], seed: 1 });
  const transform = FeatureTransform.fit(data.features, dSae, { rate: true, language: options.language }, data.langs);
  const rand = seededRandom(2);
  const weights = Float32Array.from({ length: transform.nCols }, (_, j) => (j % 5 === 0 ? 0 : gaussian(rand)));
  return new Head({
    transform, weights, bias: -0.25,
    calibration: { method: 'platt', pooled: { kind: 'platt', a: 0.5, b: 0.1 }, perLanguage: { en: { kind: 'platt', a: 2, b: -1 } } },
    thresholds: { pooled: 0.5, perLanguage: { en: 0.3 } },
    meta: { trainedOn: 'synthetic' },
  });
}

const rand = seededRandom(3);
const texts = [textFeatures([1, 3, 17, 40], rand), textFeatures([2, 63], rand), textFeatures([], rand), textFeatures([0, 5, 9, 10, 33], rand)];

describe('Head', () => {
  it('scores: logit = weights . transformed row + bias, then per-language calibration and threshold', () => {
    const head = tinyHead();
    for (const f of texts) {
      const row = head.transform.row(f);
      let z = head.bias;
      row.indices.forEach((c, k) => (z += head.weights[c] * row.values[k]));
      const en = head.score(f, 'en');
      expect(en.logit).toBeCloseTo(z, 5);
      expect(en.probability).toBeCloseTo(sigmoid(2 * z - 1), 6);
      expect(en).toMatchObject({ threshold: 0.3, toxic: en.probability >= 0.3, languageUsed: 'en', calibrationUsed: 'en' });
      const fr = head.score(f, 'fr');
      expect(fr.probability).toBeCloseTo(sigmoid(0.5 * z + 0.1), 6);
      expect(fr).toMatchObject({ threshold: 0.5, languageUsed: 'pooled', calibrationUsed: 'pooled' });
    }
  });

  it('unknown and missing languages fall back to the pooled calibrator and threshold, also with a language one-hot', () => {
    const head = tinyHead({ language: true });
    expect(head.transform.languages).toEqual(['en', 'fr']);
    const f = texts[0];
    for (const lang of ['xx', undefined]) {
      const s = head.score(f, lang);
      expect(s).toMatchObject({ languageUsed: 'pooled', calibrationUsed: 'pooled', threshold: 0.5 });
      expect(Number.isFinite(s.probability)).toBe(true);
    }
    // the one-hot column of a known language moves the logit by exactly its weight
    const langCol = head.transform.nCols - 1; // 'fr'
    expect(head.score(f, 'fr').logit - head.score(f, 'xx').logit).toBeCloseTo(head.weights[langCol], 5);
  });

  it('contributions are weight x value terms that add up to the logit', () => {
    const head = tinyHead();
    const f = texts[3];
    const s = head.score(f, 'en');
    const all = s.contributions(Infinity);
    expect(all.reduce((acc, c) => acc + c.contribution, head.bias)).toBeCloseTo(s.logit, 5);
    const top = s.contributions(3);
    expect(top).toHaveLength(3);
    expect(Math.abs(top[0].contribution)).toBeGreaterThanOrEqual(Math.abs(top[2].contribution));
    for (const c of top) {
      expect(c.contribution).toBeCloseTo(c.weight * c.value, 6);
      expect(c.firingRate).toBeCloseTo(f.rates[[...f.ids].indexOf(c.feature)], 6);
    }
  });

  it('withThresholds returns a new head and leaves the old one untouched', () => {
    const head = tinyHead();
    const next = head.withThresholds({ pooled: 0.9, fr: 0.2, en: null });
    expect(next.thresholds).toEqual({ pooled: 0.9, perLanguage: { fr: 0.2 } });
    expect(head.thresholds).toEqual({ pooled: 0.5, perLanguage: { en: 0.3 } });
    expect(next.score(texts[0], 'en')).toMatchObject({ threshold: 0.9, languageUsed: 'pooled', calibrationUsed: 'en' });
    expect(() => head.withThresholds({ de: 1.5 })).toThrow(/de threshold must be a number in \[0, 1\]/);
    expect(() => head.withThresholds({ pooled: null })).toThrow(/cannot be removed/);
  });

  it('round-trips through JSON text with identical scores', () => {
    const head = tinyHead({ language: true });
    const text = JSON.stringify(head);
    const back = Head.fromJSON(JSON.parse(text), 'head.json');
    expect(JSON.stringify(back)).toBe(text);
    expect(back.meta).toEqual({ trainedOn: 'synthetic' });
    for (const f of texts) for (const lang of ['en', 'fr', 'xx']) {
      expect(back.score(f, lang).logit).toBe(head.score(f, lang).logit);
    }
  });

  it('stores mostly-zero weights sparsely and restores them exactly', () => {
    const head = tinyHead();
    const w = new Float32Array(head.weights.length);
    w[7] = 1.5; w[100] = -2;
    const sparse = new Head({ ...head, weights: w, thresholds: { ...head.thresholds } });
    const json = sparse.toJSON();
    expect(json.weights.dtype).toBe('float32-sparse');
    expect(Array.from(Head.fromJSON(json).weights)).toEqual(Array.from(w));
  });

  it('rejects corrupted JSON with errors naming the source and the field', () => {
    const good = () => JSON.parse(JSON.stringify(tinyHead()));
    const cases: [string, (j: any) => void, RegExp][] = [
      ['wrong format', (j) => (j.format = 'something-else'), /head\.json: format/],
      ['future version', (j) => (j.version = 3), /head\.json: version/],
      ['threshold out of range', (j) => (j.thresholds.perLanguage.en = 1.5), /thresholds\.perLanguage\.en/],
      ['missing calibrator', (j) => delete j.calibration.pooled, /calibration\.pooled/],
      ['bad calibrator kind', (j) => (j.calibration.perLanguage.en = { kind: 'isotonic' }), /calibration\.perLanguage\.en/],
      ['non-finite bias', (j) => (j.bias = null), /bias/],
      ['truncated weights', (j) => (j.weights.base64 = j.weights.base64.slice(0, 40)), /head\.json: weights: expected \d+ elements/],
      ['weights of the wrong length', (j) => (j.weights.length -= 1), /weights/],
      ['idf of the wrong length', (j) => (j.transform.dSae = 65), /idf has 64 entries, expected dSae = 65/],
      ['unknown part', (j) => (j.transform.parts = ['tfidf']), /transform\.parts\.0/],
    ];
    for (const [name, corrupt, message] of cases) {
      const j = good();
      corrupt(j);
      let err: unknown;
      try { Head.fromJSON(j, 'head.json'); } catch (e) { err = e; }
      expect(err, name).toBeDefined();
      expect(isToxScopeError(err) && err.kind, name).toBe('format');
      expect((err as Error).message, name).toMatch(message);
    }
  });

  it('rejects a text whose feature ids do not fit the SAE width', () => {
    const head = tinyHead();
    expect(() => head.score(textFeatures([3, 64], rand))).toThrow(/ascending and in \[0, 64\)/);
  });
});
