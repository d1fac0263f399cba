import { describe, expect, it } from 'vitest';
import { trainHead } from '../src/head/train.js';
import { stratifiedSplit } from '../src/head/split.js';
import { evaluateHead, evaluateHeadAndRule } from '../src/head/evaluate.js';
import { Head } from '../src/head/head.js';
import { DiscoveryRule } from '../src/head/discovery.js';
import { plantedTexts } from './head-synthetic.js';

const dSae = 1024;
/** en and fr with different planted features and prevalences; 'sw' too small for its own fits. */
function corpus(seed: number) {
  const parts = [
    plantedTexts({ n: 1600, dSae, background: 20, toxicFeatures: [5, 6, 7], pPlanted: 0.5, pLeak: 0.04, langs: ['en'], positiveRate: 0.2, seed }),
    plantedTexts({ n: 1200, dSae, background: 20, toxicFeatures: [900, 901], pPlanted: 0.6, pLeak: 0.05, langs: ['fr'], positiveRate: 0.4, seed: seed + 1 }),
    plantedTexts({ n: 80, dSae, background: 20, toxicFeatures: [5, 900], pPlanted: 0.6, pLeak: 0.05, langs: ['sw'], positiveRate: 0.5, seed: seed + 2 }),
  ];
  return { features: parts.flatMap((p) => p.features), labels: parts.flatMap((p) => [...p.labels]), langs: parts.flatMap((p) => p.langs), dSae };
}

describe('stratified split', () => {
  it('holds out the same share of every (language, label) stratum, reproducibly per seed', () => {
    const { labels, langs } = corpus(1);
    const a = stratifiedSplit(labels, langs, 0.25, 42);
    expect(stratifiedSplit(labels, langs, 0.25, 42)).toEqual(a);
    expect(stratifiedSplit(labels, langs, 0.25, 43).holdout).not.toEqual(a.holdout);
    expect(a.train.length + a.holdout.length).toBe(labels.length);
    expect(new Set([...a.train, ...a.holdout]).size).toBe(labels.length);
    for (const lang of ['en', 'fr', 'sw']) for (const label of [0, 1]) {
      const inStratum = (i: number) => langs[i] === lang && labels[i] === label;
      const total = labels.filter((_, i) => inStratum(i)).length;
      expect(a.holdout.filter(inStratum).length).toBe(Math.round(0.25 * total));
    }
  });
});

describe('trainHead', () => {
  const data = corpus(1);
  const result = trainHead(data, { seed: 7, logistic: { lambda: 1e-3 }, groups: { minSamples: 200, minPerClass: 20 }, meta: { data: 'synthetic' } });
  const { head, rule, report } = result;

  it('learns a head that separates held-out texts, per language', () => {
    const fresh = corpus(100);
    const m = evaluateHead(head, fresh);
    expect(m.overall.roc_auc).toBeGreaterThan(0.85);
    expect(m.languages.en.roc_auc).toBeGreaterThan(0.8);
    expect(m.languages.fr.roc_auc).toBeGreaterThan(0.8);
    expect(report.logistic.converged).toBe(true);
  });

  it('calibration lowers ECE on the calibration split (balanced class weights inflate raw probabilities)', () => {
    expect(report.uncalibrated.overall.ece!).toBeGreaterThan(0.05);
    expect(report.calibrated.overall.ece!).toBeLessThan(report.uncalibrated.overall.ece! / 2);
    expect(report.calibrated.languages.en.ece!).toBeLessThan(report.uncalibrated.languages.en.ece!);
  });

  it('gives en and fr their own calibrators and thresholds; sw and unknown languages use the pooled ones', () => {
    expect(report.ownCalibration).toEqual(['en', 'fr']);
    expect(Object.keys(report.thresholds).sort()).toEqual(['en', 'fr', 'pooled']);
    expect(Object.keys(head.thresholds.perLanguage).sort()).toEqual(['en', 'fr']);
    const f = data.features[data.langs.indexOf('sw')];
    expect(head.score(f, 'sw').languageUsed).toBe('pooled');
    expect(head.score(f, 'zz').languageUsed).toBe('pooled');
    expect(head.score(f, 'en').languageUsed).toBe('en');
  });

  it('fits the discovery rule on the same split, with planted features at the top', () => {
    expect(result.rankings.perLanguage.en.slice(0, 3).map((b) => b.feature).sort((a, b) => a - b)).toEqual([5, 6, 7]);
    expect(result.rankings.perLanguage.fr.slice(0, 2).map((b) => b.feature).sort((a, b) => a - b)).toEqual([900, 901]);
    expect(report.rule.overall.roc_auc).toBeGreaterThan(0.7);
    expect(report.rule.overall.ece).toBeNull();
  });

  it('reports the split and solver, and is reproducible for a seed', () => {
    expect(report.split).toMatchObject({ seed: 7, calibrationFraction: 0.25, train: result.split.train.length, calibration: result.split.calibration.length });
    expect(report.split.perLanguage.sw.calibration).toBe(20);
    expect(report.logistic.columns).toBe(2 * dSae);
    const again = trainHead(data, { seed: 7, logistic: { lambda: 1e-3 }, groups: { minSamples: 200, minPerClass: 20 }, meta: { data: 'synthetic' } });
    expect(JSON.stringify(again.head)).toBe(JSON.stringify(head));
    expect(JSON.stringify(again.rule)).toBe(JSON.stringify(rule));
  });

  it('evaluates head and rule side by side in the `eval --json` shape', () => {
    const keys = ['ece', 'f1', 'macro_f1', 'n', 'pr_auc', 'precision', 'recall', 'roc_auc'];
    const r = JSON.parse(JSON.stringify(evaluateHeadAndRule(head, rule, corpus(200))));
    expect(Object.keys(r).sort()).toEqual(['languages', 'overall', 'rule']);
    expect(Object.keys(r.languages)).toEqual(['en', 'fr', 'sw']);
    expect(Object.keys(r.rule).sort()).toEqual(['languages', 'overall']);
    for (const m of [r.overall, r.rule.overall, ...Object.values(r.languages), ...Object.values(r.rule.languages)] as object[]) {
      expect(Object.keys(m).sort()).toEqual(keys);
    }
    expect(r.overall.n).toBe(r.rule.overall.n);
  });

  it('produces a head and rule that survive JSON', () => {
    const h = Head.fromJSON(JSON.parse(JSON.stringify(head)));
    const r = DiscoveryRule.fromJSON(JSON.parse(JSON.stringify(rule)));
    expect(h.meta).toEqual({ data: 'synthetic' });
    for (let i = 0; i < 50; i++) {
      expect(h.score(data.features[i], data.langs[i]).probability).toBe(head.score(data.features[i], data.langs[i]).probability);
      expect(r.score(data.features[i], data.langs[i])).toEqual(rule.score(data.features[i], data.langs[i]));
    }
    const bad = JSON.parse(JSON.stringify(rule));
    bad.pooled.k += 1;
    expect(() => DiscoveryRule.fromJSON(bad, 'rule.json')).toThrow(/rule\.json: pooled: features must list exactly k/);
  });
});
