/**
 * Pooling 'combined' (src/head/combiner.ts, src/head/train.ts): the max over a text and its parts less a penalty
 * for the number of parts, the penalty chosen on the calibration split by the dilution targets.
 */
import { describe, expect, it } from 'vitest';
import { combinerSamples, dilutionShortfall, mergeFeatures, MIXTURE_PADS } from '../src/head/combiner.js';
import { PARTS_PENALTIES, trainHead } from '../src/head/train.js';
import { Head } from '../src/head/head.js';
import { FeatureTransform } from '../src/head/features.js';
import type { TextFeatures } from '../src/head/text-features.js';
import { Rng } from '../src/util/random.js';

function feats(nTokens: number, fired: [id: number, count: number, maxAct: number][]): TextFeatures {
  const ids = Int32Array.from(fired.map((f) => f[0])), counts = Int32Array.from(fired.map((f) => f[1]));
  return { nTokens, ids, counts, rates: Float32Array.from(counts, (c) => c / nTokens), maxActs: Float32Array.from(fired.map((f) => f[2])) };
}

describe('merging the features of texts joined without context', () => {
  it('adds tokens and counts, recomputes rates from them and keeps each feature\'s largest activation', () => {
    const m = mergeFeatures([feats(4, [[1, 2, 0.5], [7, 1, 2]]), feats(6, [[3, 3, 1], [7, 2, 1.5]])]);
    expect(m.nTokens).toBe(10);
    expect(Array.from(m.ids)).toEqual([1, 3, 7]);
    expect(Array.from(m.counts)).toEqual([2, 3, 3]);
    expect(Array.from(m.rates)).toEqual([0.2, 0.3, 0.3].map(Math.fround));
    expect(Array.from(m.maxActs)).toEqual([0.5, 1, 2]);
  });
});

/**
 * Texts of one sentence over an 8-feature SAE: feature 0 is an insult detector that fires on every toxic text and,
 * now and then (`falsePositive`), on a benign one; features 1-7 fire at random on both. A max over many benign
 * texts' parts meets feature 0 more often the more parts there are.
 */
function corpus(seed: number, n: number, falsePositive: number) {
  const rng = new Rng(seed);
  const features: TextFeatures[] = [], labels: number[] = [], langs: string[] = [];
  for (let i = 0; i < n; i++) {
    const toxic = i % 3 === 0;
    const fired: [number, number, number][] = [];
    if (toxic || rng.next() < falsePositive) fired.push([0, 1 + Math.floor(rng.next() * 2), 1 + rng.next()]);
    for (let id = 1; id < 8; id++) if (rng.next() < 0.3) fired.push([id, 1, rng.next()]);
    features.push(feats(8 + Math.floor(rng.next() * 8), fired));
    labels.push(toxic ? 1 : 0);
    langs.push(i % 2 === 0 ? 'en' : 'de');
  }
  return { features, labels, langs, dSae: 8 };
}

describe("training pooling 'combined': the parts penalty chosen by the dilution targets", () => {
  const { report, head } = trainHead(corpus(5, 2400, 0.004), { pooling: 'combined', seed: 1 });
  const dilution = report.dilution!;
  const at = (penalty: number) => dilution.tried.find((t) => t.penalty === penalty)!.points;

  it('tries every penalty from 0 (the plain max) up, and reports kept and rise among 3 and 30 for each', () => {
    expect(dilution.tried.map((t) => t.penalty)).toEqual(PARTS_PENALTIES);
    for (const t of dilution.tried) expect(t.points.map((p) => p.pads)).toEqual([...MIXTURE_PADS]);
  });

  it('picks a penalty that meets every target where the plain max does not, and serves it', () => {
    const plain = at(0);
    expect(dilutionShortfall(plain).rise).toBeGreaterThan(0); //   the plain max: benign texts among 30 flagged more often
    expect(plain.find((p) => p.pads === 30)!.rise).toBeGreaterThan(0.02);
    expect(dilution.penalty).toBeGreaterThan(0);
    expect(dilutionShortfall(dilution.points)).toEqual({ kept: 0, rise: 0 });
    expect(head.pooling).toBe('combined');
    expect(head.combiner).toEqual({ whole: 0, max: 1, parts: -dilution.penalty, bias: 0 });
  });

  it('puts evasion first where no penalty meets every target: toxic texts stay flagged among padding, benign rise as low as that allows', () => {
    const noisy = trainHead(corpus(7, 2400, 0.25), { pooling: 'combined', seed: 1 }).report.dilution!; // a quarter of benign texts fire the insult feature
    const misses = (t: (typeof noisy.tried)[number]) => dilutionShortfall(t.points).kept + dilutionShortfall(t.points).rise;
    expect(noisy.tried.every((t) => misses(t) > 0)).toBe(true); //                                      no penalty meets every target
    expect(dilutionShortfall(noisy.tried[0].points).kept).toBe(0); //                                    the plain max keeps them
    expect(dilutionShortfall(noisy.points).kept).toBe(0);
    const riseOf = (ps: typeof noisy.points) => dilutionShortfall(ps).rise;
    for (const t of noisy.tried) if (dilutionShortfall(t.points).kept === 0) expect(riseOf(noisy.points)).toBeLessThanOrEqual(riseOf(t.points));
  });

  it('still flags a fresh insult among 30 benign texts and leaves 30 benign texts together unflagged', () => {
    const fresh = corpus(99, 400, 0);
    const benign = fresh.features.filter((_, i) => fresh.labels[i] === 0), toxic = fresh.features.filter((_, i) => fresh.labels[i] === 1);
    const among = (core: TextFeatures, pads: TextFeatures[]): TextFeatures => ({ ...mergeFeatures([core, ...pads]), segments: [core, ...pads], windowsFrom: pads.length + 1 });
    let kept = 0, flagged = 0;
    for (let i = 0; i < 20; i++) {
      const pads = benign.slice(i * 3, i * 3 + 30);
      if (head.score(among(toxic[i], pads), 'en').toxic) kept++;
      if (head.score(among(benign[200 - i], pads), 'en').toxic) flagged++;
    }
    expect(kept).toBeGreaterThanOrEqual(18);
    expect(flagged).toBeLessThanOrEqual(1);
  });
});

describe('mixtures of the calibration split', () => {
  const texts = [feats(3, [[0, 1, 1]]), feats(5, [[1, 2, 1]]), feats(4, [[2, 1, 1]]), feats(2, [[0, 2, 1]])];
  texts[2].segments = [feats(2, [[2, 1, 1]]), feats(2, [[5, 1, 3]])];
  const labels = [1, 0, 0, 0], langs = ['en', 'en', 'en', 'en'];
  const logit = (f: TextFeatures) => f.nTokens; //                                                  a stand-in head
  const samples = combinerSamples({ features: texts, labels, langs, logit, partLogits: (f) => (f.segments ?? []).map(logit) }, 1);

  it('holds every text as it is, then every text among each pad count of benign texts of its language, never itself', () => {
    expect(samples.filter((s) => s.pads === 0)).toHaveLength(4);
    for (const pads of MIXTURE_PADS) expect(samples.filter((s) => s.pads === pads)).toHaveLength(4);
    const toxicAmong3 = samples.find((s) => s.pads === 3 && s.label === 1)!;
    // its own part (itself: one sentence, logit 3) and 3 benign members' parts (2 for the one with segments)
    expect(toxicAmong3.parts).toContain(3);
    expect(toxicAmong3.parts.length).toBeGreaterThanOrEqual(4);
    // the whole text's features are its members' merged: at least its own 3 tokens and 3 more members' worth
    expect(toxicAmong3.whole).toBeGreaterThanOrEqual(3 + 3 * 2);
  });
});

describe("a head with pooling 'combined'", () => {
  const transform = new FeatureTransform({ dSae: 4, parts: ['rate'], normalize: false, languages: [], idf: new Float32Array(4).fill(1) });
  const head = new Head({
    transform, weights: Float32Array.from([4, 0, 0, 0]), bias: -1, calibration: { method: 'platt', pooled: { kind: 'platt', a: 1, b: 0 }, perLanguage: {} },
    thresholds: { pooled: 0.5, perLanguage: {} }, pooling: 'combined', combiner: { whole: 0.25, max: 1, parts: -0.5, bias: 0.1 },
  });
  const text = feats(4, [[0, 1, 1]]);
  text.segments = [feats(2, [[0, 1, 1]]), feats(2, [[1, 1, 1]])];

  it('scores a w + b max + c sqrt(2 ln(1 + parts)) + d and points at the part that gave the max', () => {
    // whole: 4 x 0.25 - 1 = 0; parts: 4 x 0.5 - 1 = 1 and -1; max 1
    const s = head.score(text);
    expect(s.logit).toBeCloseTo(0.25 * 0 + 1 * 1 - 0.5 * Math.sqrt(2 * Math.log(3)) + 0.1, 6);
    expect(s.segment).toBe(0);
  });

  it('survives JSON and refuses to exist without its combiner', () => {
    const again = Head.fromJSON(JSON.parse(JSON.stringify(head.toJSON())));
    expect(again.score(text).logit).toBeCloseTo(head.score(text).logit, 6);
    expect(() => new Head({ transform, weights: head.weights, bias: 0, calibration: head.calibration, thresholds: { pooled: 0.5, perLanguage: {} }, pooling: 'combined' })).toThrow(/combiner/);
  });
});
