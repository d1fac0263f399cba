/**
 * `npm run -s bench -- dilution [--per-class 25] [--seed 5] [--json] [--data-dir .toxscope]`
 *
 * Does benign padding wash a toxic text out? On held-out in-domain texts of each language (../shared/data minus the
 * fixture sample the demo trained on): every toxic text the demo's toxicity head flags alone is embedded, at a random
 * position, among 3 and among 30 benign sentences of the same language (--padding friendly: everyday sentences written
 * for this bench, bench/benign-sentences.ts; --padding heldout: sentences of other held-out non-toxic texts, each ended
 * with a full stop when it had no end punctuation), joined by spaces, and scored again; benign texts go
 * through the same padding. Reported: the share of flagged toxic texts still flagged, and the benign flag rate alone
 * and padded (its rise). The same texts are also scored with the other poolings (whole text: the head before this
 * change) to show what sentence scoring buys. `--show-lost N` prints up to N toxic texts per pad count that the served
 * head flags alone but not padded (language, probabilities, the text). THE DEMO BACKBONE IS SYNTHETIC: pipeline numbers, not Qwen3's.
 */
import { featurizeForBundle } from '../src/bundle/open.js';
import { Head } from '../src/head/head.js';
import { progressBar } from '../src/cli/progress.js';
import { sentenceBounds } from '../src/engine/segments.js';
import { normalizeText } from '../src/engine/normalize.js';
import { seededRandom, shuffleInPlace } from '../src/util/random.js';
import type { LabeledText } from '../src/data/labeled.js';
import { heldOut } from './heldout.js';
import { BENIGN_SENTENCES } from './benign-sentences.js';
import { f3, flag, openDemo } from './demo-context.js';

const PADS = [3, 30] as const;

/** Weighted expected calibration error over 10 equal-width probability bins. */
export function expectedCalibrationError(probs: readonly number[], labels: readonly number[], weights: readonly number[], bins = 10): number {
  const w = new Float64Array(bins), p = new Float64Array(bins), y = new Float64Array(bins);
  let total = 0;
  probs.forEach((q, i) => {
    const b = Math.min(bins - 1, Math.floor(q * bins));
    w[b] += weights[i];
    p[b] += weights[i] * q;
    y[b] += weights[i] * labels[i];
    total += weights[i];
  });
  let e = 0;
  for (let b = 0; b < bins; b++) if (w[b] > 0) e += Math.abs(p[b] - y[b]);
  return total > 0 ? e / total : 0;
}

function sentencesOf(text: string): string[] {
  const t = normalizeText(text).text;
  const b = sentenceBounds(t);
  return b.map((s, i) => t.slice(s, b[i + 1] ?? t.length).trim()).filter((s) => s.length >= 8 && s.length <= 240).map((s) => (/[.!?。！？…]$/u.test(s) ? s : `${s}.`));
}

export async function run(argv: string[]): Promise<number> {
  const perClass = Number(flag(argv, 'per-class', '25'));
  const padding = flag(argv, 'padding', 'friendly'); // friendly: bench/benign-sentences.ts; heldout: other held-out non-toxic texts' sentences
  const rand = seededRandom(Number(flag(argv, 'seed', '5')));
  const r = await openDemo(argv);
  try {
    const items = heldOut({ perLanguage: 2 * perClass, toxicShare: 0.5, seed: 21 });
    const exclude = new Set([...items.values()].flat().map((t) => t.text));
    const padPool = heldOut({ perLanguage: 400, toxicShare: 0, seed: 22, exclude });
    type Probe = { lang: string; label: number; item: number; pad: number; text: string; sentences: number };
    const probes: Probe[] = [];
    let item = 0;
    for (const [lang, set] of items) {
      const pool = padding === 'friendly' ? BENIGN_SENTENCES[lang] ?? [] : shuffleInPlace([...(padPool.get(lang) ?? [])].flatMap((t: LabeledText) => sentencesOf(t.text)), rand);
      if (pool.length === 0) continue;
      for (const t of set) {
        probes.push({ lang, label: t.label, item, pad: 0, text: t.text, sentences: sentenceBounds(normalizeText(t.text).text).length });
        for (const pad of PADS) {
          const sentences = Array.from({ length: pad }, () => pool[Math.floor(rand() * pool.length)]);
          sentences.splice(Math.floor(rand() * (pad + 1)), 0, t.text);
          probes.push({ lang, label: t.label, item, pad, text: sentences.join(' '), sentences: pad + 1 });
        }
        item++;
      }
    }
    // how many padding sentences the head flags on their own: a max over sentences flags every text holding one
    const padSentences = [...items.keys()].flatMap((lang) => (padding === 'friendly' ? (BENIGN_SENTENCES[lang] ?? []) : []).map((text) => ({ lang, text })));
    const padFeatures = await featurizeForBundle(r, padSentences.map((p) => p.text));
    const padFlagged: Record<string, string> = {};
    for (const lang of items.keys()) {
      const idx = padSentences.flatMap((p, i) => (p.lang === lang ? [i] : []));
      if (idx.length) padFlagged[lang] = `${idx.filter((i) => r.bundle.head.score(padFeatures[i], lang).toxic).length} of ${idx.length}`;
    }
    const progress = progressBar((s) => process.stderr.write(s));
    const features = await featurizeForBundle(r, probes.map((p) => p.text), (d, n) => progress.update('probes', d, n));
    progress.done();
    const served = r.bundle.head;
    const variant = (pooling: Head['pooling']) => new Head({ ...served, thresholds: served.thresholds, pooling } as ConstructorParameters<typeof Head>[0]);
    const measure = (h: Head) => {
      const flagged = probes.map((p, i) => h.score(features[i], p.lang).toxic);
      const alone = new Map<number, boolean>();
      probes.forEach((p, i) => p.pad === 0 && alone.set(p.item, flagged[i]));
      const perLang: Record<string, Record<string, number>> = {};
      const rate = (sel: (p: Probe) => boolean) => {
        const idx = probes.flatMap((p, i) => (sel(p) ? [i] : []));
        return { n: idx.length, rate: idx.filter((i) => flagged[i]).length / Math.max(1, idx.length) };
      };
      const stats = (lang?: string) => {
        const inLang = (p: Probe) => lang === undefined || p.lang === lang;
        const o: Record<string, number> = {};
        for (const pad of PADS) {
          const kept = rate((p) => inLang(p) && p.label === 1 && p.pad === pad && alone.get(p.item) === true);
          o[`toxic_kept_${pad}`] = kept.rate;
          o[`toxic_flagged_alone_n`] = kept.n;
          o[`benign_flag_${pad}`] = rate((p) => inLang(p) && p.label === 0 && p.pad === pad).rate;
        }
        o.benign_flag_alone = rate((p) => inLang(p) && p.label === 0 && p.pad === 0).rate;
        return o;
      };
      for (const lang of items.keys()) perLang[lang] = stats(lang);
      // calibration: expected calibration error (10 equal-width bins) of the probabilities, each text weighted so
      // that toxic ones are the deployment's share (the held-out items are half toxic, the head is calibrated for
      // its prior), on the texts alone (by number of sentences) and padded (label: the embedded text's)
      const probs = probes.map((p, i) => h.score(features[i], p.lang).probability);
      const share = h.prior?.deployment.pooled ?? 0.5;
      const ece = (sel: (p: Probe) => boolean) => {
        const idx = probes.flatMap((p, i) => (sel(p) ? [i] : []));
        return expectedCalibrationError(idx.map((i) => probs[i]), idx.map((i) => probes[i].label), idx.map((i) => (probes[i].label === 1 ? share / 0.5 : (1 - share) / 0.5)));
      };
      const calibration = {
        alone: ece((p) => p.pad === 0), alone_one_sentence: ece((p) => p.pad === 0 && p.sentences === 1), alone_several_sentences: ece((p) => p.pad === 0 && p.sentences > 1),
        padded_3: ece((p) => p.pad === 3), padded_30: ece((p) => p.pad === 30),
      };
      return { overall: stats(), perLanguage: perLang, calibration };
    };
    const variants = { [`served (${served.pooling})`]: measure(served), ...Object.fromEntries((['max-segment', 'sentences', 'whole'] as const).filter((p) => p !== served.pooling).map((p) => [p, measure(variant(p))])) };
    const showLost = Number(flag(argv, 'show-lost', '0'));
    if (showLost > 0) {
      const score = (i: number) => served.score(features[i], probes[i].lang);
      const aloneAt = new Map<number, number>();
      probes.forEach((p, i) => p.pad === 0 && aloneAt.set(p.item, i));
      for (const pad of PADS) {
        const lost = probes.flatMap((p, i) => (p.pad === pad && p.label === 1 && score(aloneAt.get(p.item)!).toxic && !score(i).toxic ? [i] : []));
        console.log(`\nlost among ${pad}: ${lost.length}`);
        for (const i of lost.slice(0, showLost)) {
          const a = aloneAt.get(probes[i].item)!, sa = score(a), sp = score(i);
          console.log(`  ${probes[i].lang} alone p=${sa.probability.toFixed(3)} (thr ${sa.threshold.toFixed(3)}, part ${sa.segment}) padded p=${sp.probability.toFixed(3)} part ${sp.segment} | ${JSON.stringify(probes[a].text.slice(0, 160))}`);
        }
      }
    }
    const out = { bundle: r.bundle.manifest.version, synthetic_backbone: r.bundle.manifest.synthetic_backbone, per_class: perClass, pads: PADS, padding, padding_sentences_flagged_alone: padFlagged, variants };
    if (argv.includes('--json')) console.log(JSON.stringify(out, null, 2));
    else {
      console.log(`${out.bundle} (SYNTHETIC backbone: pipeline numbers, not Qwen3's); ${perClass} toxic + ${perClass} benign held-out texts per language; padding: ${padding}`);
      if (padding === 'friendly') console.log(`padding sentences the served head flags on their own: ${Object.entries(padFlagged).map(([l, v]) => `${l} ${v}`).join(', ')}`);
      for (const [name, m] of Object.entries(variants)) {
        console.log(`\n${name}\nlang  flagged-alone | kept among 3 | kept among 30 | benign alone | benign +3 | benign +30`);
        for (const [lang, s] of [...Object.entries(m.perLanguage), ['ALL', m.overall] as const])
          console.log(`${lang.padEnd(5)} ${String(s.toxic_flagged_alone_n).padStart(8)}      |    ${f3(s.toxic_kept_3)}     |    ${f3(s.toxic_kept_30)}      |    ${f3(s.benign_flag_alone)}     |   ${f3(s.benign_flag_3)}   |   ${f3(s.benign_flag_30)}`);
        const c = m.calibration;
        console.log(`ECE (prior-weighted): alone ${f3(c.alone)} (one sentence ${f3(c.alone_one_sentence)}, several ${f3(c.alone_several_sentences)}); padded +3 ${f3(c.padded_3)}, +30 ${f3(c.padded_30)}`);
      }
    }
    return 0;
  } finally {
    await r.engine.close();
  }
}
