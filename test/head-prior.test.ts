import { describe, expect, it } from 'vitest';
import { Head } from '../src/head/head.js';
import { trainHead } from '../src/head/train.js';
import { logOdds, priorShift } from '../src/head/prior.js';
import { binaryMetrics, expectedCalibrationError } from '../src/head/metrics.js';
import { plantedTexts } from './head-synthetic.js';

const dSae = 64;
const planted = (n: number, positiveRate: number, seed: number) =>
  plantedTexts({ n, dSae, background: 6, toxicFeatures: [3, 7], pPlanted: 0.6, pLeak: 0.15, langs: ['en', 'de'], positiveRate, seed });

describe('prior shift to the deployment prevalence', () => {
  const balanced = planted(2000, 0.5, 1);
  const rare = planted(4000, 0.2, 2); // held out, at the deployment's prevalence
  const base = trainHead({ ...balanced, dSae }, { seed: 0, pooling: 'whole' });
  const shifted = trainHead({ ...balanced, dSae }, { seed: 0, pooling: 'whole', prevalence: { pooled: 0.2 } });

  it('adds logit(pi_deploy) - logit(pi_sample) to the calibrated logit', () => {
    const p = shifted.head.prior!;
    expect(p.deployment.pooled).toBe(0.2);
    for (let i = 0; i < 20; i++) {
      const f = rare.features[i], lang = rare.langs[i];
      const a = base.head.score(f, lang), b = shifted.head.score(f, lang);
      expect(b.logit).toBeCloseTo(a.logit, 6);
      const sampleShare = b.calibrationUsed === 'pooled' ? p.sample.pooled : p.sample.perLanguage[b.calibrationUsed];
      expect(priorShift(p, b.calibrationUsed, lang)).toBeCloseTo(logOdds(0.2) - logOdds(sampleShare), 9);
      expect(Math.log(b.probability / (1 - b.probability))).toBeCloseTo(Math.log(a.probability / (1 - a.probability)) + logOdds(0.2) - logOdds(sampleShare), 6);
    }
  });

  it('is better calibrated and scores a higher F1 on data at that prevalence than the head calibrated on the balanced sample', () => {
    const evalOn = (h: Head) => {
      const scores = rare.features.map((f, i) => h.score(f, rare.langs[i]));
      return {
        ece: expectedCalibrationError(rare.labels, scores.map((s) => s.probability)),
        f1: binaryMetrics({ labels: rare.labels, scores: scores.map((s) => s.probability), predicted: scores.map((s) => (s.toxic ? 1 : 0)) }).f1!,
        flagged: scores.filter((s) => s.toxic).length / scores.length,
      };
    };
    const a = evalOn(base.head), b = evalOn(shifted.head);
    expect(b.ece!).toBeLessThan(a.ece!);
    expect(b.f1).toBeGreaterThan(a.f1);
    expect(b.flagged).toBeLessThan(a.flagged);
    for (const lang of ['pooled', 'en', 'de']) {
      const t0 = lang === 'pooled' ? base.head.thresholds.pooled : base.head.thresholds.perLanguage[lang];
      const t1 = lang === 'pooled' ? shifted.head.thresholds.pooled : shifted.head.thresholds.perLanguage[lang];
      expect(t1, lang).toBeDefined();
      expect(t0, lang).toBeDefined();
    }
  });

  it('withPrevalence on a trained head gives what training at that prevalence gives, and survives JSON', () => {
    const later = base.head.withPrevalence({ pooled: 0.2 });
    expect(later.thresholds).toEqual(shifted.head.thresholds);
    const back = Head.fromJSON(JSON.parse(JSON.stringify(later.toJSON())));
    for (let i = 0; i < 20; i++) expect(back.score(rare.features[i], rare.langs[i]).probability).toBeCloseTo(later.score(rare.features[i], rare.langs[i]).probability, 6);
    // a language of its own overrides pooled; null returns it to pooled
    const de = later.withPrevalence({ de: 0.05 });
    const f = rare.features[1];
    expect(de.score(f, 'de').probability).toBeLessThan(later.score(f, 'de').probability);
    expect(de.score(f, 'en').probability).toBeCloseTo(later.score(f, 'en').probability, 9);
    expect(de.withPrevalence({ de: null }).score(f, 'de').probability).toBeCloseTo(later.score(f, 'de').probability, 9);
    expect(() => later.withPrevalence({ en: 1.2 })).toThrow(/strictly between 0 and 1/);
  });

  it('a target precision is chosen at the deployment prevalence, not at the sample prevalence', () => {
    const precisionOn = (prevalence?: Record<string, number>) => {
      const h = trainHead({ ...balanced, dSae }, { seed: 0, pooling: 'whole', prevalence, thresholds: { mode: 'precision', target: 0.6 } });
      const scores = rare.features.map((f, i) => h.head.score(f, rare.langs[i]));
      return binaryMetrics({ labels: rare.labels, scores: scores.map((s) => s.probability), predicted: scores.map((s) => (s.toxic ? 1 : 0)) }).precision!;
    };
    const atSample = precisionOn(undefined), atDeployment = precisionOn({ pooled: 0.2 });
    expect(atSample).toBeLessThan(0.5); // the balanced sample's 0.6 is far lower at 20% toxic
    expect(atDeployment).toBeGreaterThan(0.55); // chosen for 0.6 on the calibration split reweighted to 20% toxic
  });
});

describe('max-segment pooling', () => {
  it('scores a text by its most toxic sentence, and names it', () => {
    const data = planted(1500, 0.5, 5);
    const { head } = trainHead({ ...data, dSae }, { seed: 0 });
    expect(head.pooling).toBe('max-segment');
    const toxic = data.features.find((f, i) => data.labels[i] === 1 && head.score(f, data.langs[i]).toxic)!;
    const benign = data.features.filter((f, i) => data.labels[i] === 0 && !head.score(f, 'en').toxic).slice(0, 3);
    const merge = (parts: typeof benign) => {
      const ids = [...new Set(parts.flatMap((p) => [...p.ids]))].sort((a, b) => a - b);
      const count = (id: number) => parts.reduce((s, p) => s + (p.counts[p.ids.indexOf(id)] ?? 0), 0);
      const nTokens = parts.reduce((s, p) => s + p.nTokens, 0);
      const counts = Int32Array.from(ids, count);
      return { nTokens, ids: Int32Array.from(ids), counts, rates: Float32Array.from(counts, (c) => c / nTokens), maxActs: Float32Array.from(ids, (id) => Math.max(...parts.map((p) => (p.ids.indexOf(id) >= 0 ? p.maxActs[p.ids.indexOf(id)] : 0)))) };
    };
    const padded = { ...merge([...benign, toxic]), segments: [...benign, toxic] };
    const s = head.score(padded, 'en');
    expect(s.segment).toBe(3);
    expect(s.logit).toBeCloseTo(head.score(toxic, 'en').logit, 6);
    expect(s.toxic).toBe(true);
    const whole = new Head({ ...head, thresholds: head.thresholds, pooling: 'whole' } as never);
    expect(whole.score(padded, 'en').segment).toBe(-1);
  });
});

describe('window offset', () => {
  // Every text becomes a text of two sentences (itself and a neutral one) with windows; half of all texts, whatever
  // their label, get a window that looks toxic (a fragment that fires the toxic features, as fragments of benign
  // sentences do on a weak head). The windows carry no information: a plain max over them flags benign texts.
  const base = planted(3000, 0.5, 7);
  const fragment = base.features.find((_, i) => base.labels[i] === 1)!;
  const neutral = base.features.find((f, i) => base.labels[i] === 0 && f.ids.every((id) => id !== 3 && id !== 7))!;
  const withWindows = (d: ReturnType<typeof planted>, seed: number) => {
    let s = seed;
    const coin = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) < 0.5;
    return { ...d, features: d.features.map((f) => ({ ...f, segments: [f, neutral, ...(coin() ? [fragment] : [neutral])], windowsFrom: 2 })) };
  };
  const train = withWindows(base, 1);
  const heldOut = withWindows(planted(3000, 0.5, 8), 2);

  it('is fitted on the calibration split: windows that look toxic on benign texts no longer decide, and multi-sentence texts stay calibrated', () => {
    const fitted = trainHead({ ...train, dSae }, { seed: 0, windowOffset: 'fit' }).head;
    const none = trainHead({ ...train, dSae }, { seed: 0 }).head;
    expect(fitted.windowOffset).toBeGreaterThan(0);
    expect(none.windowOffset).toBe(0);
    const evalOn = (h: Head) => {
      const scores = heldOut.features.map((f, i) => h.score(f, heldOut.langs[i]));
      const probs = scores.map((x) => x.probability);
      return { ece: expectedCalibrationError(heldOut.labels, probs), auc: binaryMetrics({ labels: heldOut.labels, scores: probs, predicted: scores.map((x) => (x.toxic ? 1 : 0)) }).roc_auc! };
    };
    const a = evalOn(fitted), b = evalOn(none);
    expect(a.auc).toBeGreaterThan(b.auc + 0.02); // the uninformative windows no longer decide the ranking
    expect(a.ece).toBeLessThan(0.06); // and the max over parts stays calibrated on held-out texts of several parts
    // survives JSON; a text of one sentence (no segments) is scored exactly as before
    expect(Head.fromJSON(JSON.parse(JSON.stringify(fitted.toJSON()))).windowOffset).toBe(fitted.windowOffset);
    const plain = planted(10, 0.5, 9);
    for (let i = 0; i < 10; i++) expect(fitted.score(plain.features[i], plain.langs[i]).logit).toBeCloseTo(none.score(plain.features[i], plain.langs[i]).logit, 9);
  });
});
