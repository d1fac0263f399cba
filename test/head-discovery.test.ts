import { describe, expect, it } from 'vitest';
import { chooseK, fitDiscoveryRule, rankFeatures } from '../src/head/discovery.js';
import { plantedTexts, textFeatures } from './head-synthetic.js';
import { seededRandom } from '../src/util/random.js';

const dSae = 512;
const planted = (toxicFeatures: number[], lang: string, seed: number, n = 800) =>
  plantedTexts({ n, dSae, background: 12, toxicFeatures, pPlanted: 0.7, pLeak: 0.03, langs: [lang], seed });

describe('discovery', () => {
  it('ranks planted toxic features first, most biased first', () => {
    const strong = planted([300], 'en', 1);
    // a weaker second feature: fires on 35% of toxic texts and 5% of the rest
    const rand = seededRandom(9);
    const features = strong.features.map((f, i) =>
      rand() < (strong.labels[i] ? 0.35 : 0.05) ? textFeatures([...f.ids, 77], rand) : f);
    const ranking = rankFeatures(features, strong.labels, dSae);
    expect(ranking[0].feature).toBe(300);
    expect(ranking[0].pToxic).toBeGreaterThan(0.6);
    expect(ranking[0].pNonToxic).toBeLessThan(0.1);
    expect(ranking[1].feature).toBe(77);
    expect(ranking[1].bias).toBeLessThan(ranking[0].bias);
    for (const b of ranking) expect(b.bias).toBeCloseTo(b.pToxic - b.pNonToxic, 12);
  });

  it('chooses K to maximise F1 on the validation texts', () => {
    const rand = seededRandom(3);
    // feature 1 flags all 4 toxic texts; adding feature 2 also flags 3 clean texts
    const texts = [[1], [1], [1], [1, 2], [2], [2], [2], [5]].map((ids) => textFeatures(ids, rand));
    const labels = [1, 1, 1, 1, 0, 0, 0, 0];
    expect(chooseK([1, 2], texts, labels)).toEqual({ k: 1, f1: 1 });
    expect(chooseK([2, 1], texts, labels)).toEqual({ k: 2, f1: 8 / 11 }); // tp 4, fp 3, fn 0
  });

  it('fits per-language rules where there is data and falls back to the pooled rule', () => {
    const enTrain = planted([10, 11], 'en', 2), enVal = planted([10, 11], 'en', 3, 400);
    const frTrain = planted([20], 'fr', 4), frVal = planted([20], 'fr', 5, 400);
    const join = (a: typeof enTrain, b: typeof enTrain) => ({
      features: [...a.features, ...b.features], labels: [...a.labels, ...b.labels], langs: [...a.langs, ...b.langs],
    });
    const { rule, rankings } = fitDiscoveryRule(join(enTrain, frTrain), join(enVal, frVal), dSae, { maxK: 32 });
    expect(Object.keys(rule.state.perLanguage).sort()).toEqual(['en', 'fr']);
    expect(rule.state.perLanguage.fr.features[0]).toBe(20);
    expect(rule.state.perLanguage.en.features.slice(0, 2).sort()).toEqual([10, 11]);
    expect(rankings.pooled.slice(0, 3).map((b) => b.feature).sort((a, b) => a - b)).toEqual([10, 11, 20]);
    expect(rule.state.perLanguage.en.validationF1).toBeGreaterThan(0.8);

    const rand = seededRandom(6);
    const hit = rule.score(textFeatures([20, 400], rand), 'fr');
    expect(hit).toMatchObject({ toxic: true, firing: [20], languageUsed: 'fr' });
    expect(hit.score).toBeCloseTo(1 / rule.state.perLanguage.fr.k, 12);
    expect(rule.score(textFeatures([20], rand), 'en').languageUsed).toBe('en');
    expect(rule.score(textFeatures([20], rand), 'xx')).toMatchObject({ languageUsed: 'pooled', toxic: true });
    expect(rule.score(textFeatures([], rand))).toMatchObject({ languageUsed: 'pooled', toxic: false, score: 0 });
  });
});
