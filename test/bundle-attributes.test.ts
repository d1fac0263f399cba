/**
 * A bundle with several attributes and feature labels, trained by trainBundle on the golden tiny checkpoint from the
 * licensed fixture sample (attribute labels derived from the sources' original annotation), then served by the
 * real Classifier on the real engine.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readBundle, type Bundle } from '../src/bundle/load.js';
import { trainBundle } from '../src/bundle/train-bundle.js';
import { fixtureAttributes } from '../src/bundle/demo/fixture-attributes.js';
import { readLabeled } from '../src/data/labeled.js';
import { Classifier } from '../src/engine/classifier.js';
import { ForwardEngine } from '../src/engine/forward-engine.js';
import { TextWorker } from '../src/engine/text-worker.js';
import { loadConfig } from '../src/config.js';
import { main } from '../src/cli/main.js';
import { isToxScopeError } from '../src/errors.js';
import { goldenCheckpointDir, goldensDir, repoRoot } from './helpers/goldens.js';

let work: string;
let bundle: Bundle;
let classifier: Classifier;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'toxscope-attr-'));
  const rows = readLabeled(join(repoRoot, 'fixtures', 'data', 'train'));
  const take = (source: string, label: number, n: number) => rows.filter((r) => r.source === source && r.label === label).slice(0, n);
  const sample = [...take('germeval2018', 1, 160), ...take('germeval2018', 0, 100), ...take('davidson', 1, 200), ...take('davidson', 0, 60)];
  await trainBundle({
    data: sample, deriveAttributes: fixtureAttributes, storeText: true,
    modelDir: goldenCheckpointDir, saePath: join(goldensDir, 'sae-saelens-L2'), layer: 2, out: join(work, 'bundle'),
    name: 'attr', seed: 3, cacheDir: join(work, 'graph-cache'), threads: 1, windowTokens: 64, windowOverlap: 8,
  });
  bundle = readBundle(join(work, 'bundle'));
  const engine = await ForwardEngine.open({ modelDir: bundle.modelDir, layer: 2, sae: bundle.sae, cacheDir: join(work, 'graph-cache'), threads: 1 });
  const config = loadConfig({ env: { TOXSCOPE_WINDOW_TOKENS: '64', TOXSCOPE_WINDOW_OVERLAP: '8' }, cwd: work });
  classifier = new Classifier(
    { engine, text: await TextWorker.open({ modelDir: bundle.modelDir }), head: bundle.head, attributes: bundle.attributes, featureLabels: bundle.featureLabels, version: bundle.manifest.version },
    { limits: config.limits, batching: config.batching },
  );
}, 600_000);

afterAll(async () => {
  await classifier?.close();
  rmSync(work, { recursive: true, force: true });
});

describe('attributes in a bundle', () => {
  it('trains one head per attribute with enough labels, on the toxicity head\'s transform, and maps OpenAI categories', () => {
    expect(bundle.manifest.attributes?.names).toContain('identity_attack');
    expect(Object.keys(bundle.attributes)).toEqual(bundle.manifest.attributes!.names);
    const ia = bundle.attributes.identity_attack;
    expect(ia.transform.dSae).toBe(bundle.head.transform.dSae);
    expect([...ia.transform.idf]).toEqual([...bundle.head.transform.idf]); // one fitted transform, shared
    expect(ia.meta.attribute).toBe('identity_attack');
    expect(Object.keys(ia.thresholds.perLanguage).length + 1).toBeGreaterThan(0);
    // profanity: 24 GermEval labels in the fixture sample at most, fewer than 40 per class here: no head
    expect(bundle.attributes.profanity).toBeUndefined();
    expect(bundle.openaiCategories).toEqual({ harassment: 'toxicity', hate: 'identity_attack' });
    const metrics = bundle.manifest.metrics as { attributes: Record<string, { calibration_split: { overall: { n: number } } }> };
    expect(metrics.attributes.identity_attack.calibration_split.overall.n).toBeGreaterThan(0);
  });

  it('classify scores every attribute, or those asked for, each with its threshold and driving span', async () => {
    const text = 'Have a lovely evening. Thanks for coming! Ihr seid dumme Idioten.';
    const out = await classifier.classify({ texts: [text], language: 'de' });
    const r = out.results[0];
    expect(Object.keys(r.attributes).sort()).toEqual(['toxicity', ...Object.keys(bundle.attributes)].sort());
    expect(r.attributes.toxicity.score).toBe(r.score);
    for (const a of Object.values(r.attributes)) {
      expect(a.score).toBeGreaterThanOrEqual(0);
      expect(a.score).toBeLessThanOrEqual(1);
      expect(a.toxic).toBe(a.score >= a.threshold);
      expect(a.span[0]).toBeGreaterThanOrEqual(0);
      expect(a.span[1]).toBeLessThanOrEqual(text.length);
    }
    const only = await classifier.classify({ texts: [text], language: 'de', attributes: ['identity_attack'] });
    expect(Object.keys(only.results[0].attributes).sort()).toEqual(['identity_attack', 'toxicity']);
    expect(only.results[0].attributes.identity_attack.score).toBeCloseTo(r.attributes.identity_attack.score, 9);
    let err: unknown;
    try { await classifier.classify({ texts: [text], attributes: ['threat'] }); } catch (e) { err = e; }
    expect(isToxScopeError(err) && err.kind).toBe('validation');
    expect((err as Error).message).toMatch(/unknown attribute threat: this bundle scores toxicity, identity_attack/);
  });

  it('refuses texts with no visible characters like an empty one, and spans point into the original string', async () => {
    for (const t of ['   ', '\u0000', '\u200B\u200D', '\t\n\u3000']) {
      let err: unknown;
      try { await classifier.classify({ texts: ['fine', t] }); } catch (e) { err = e; }
      expect(isToxScopeError(err) && err.kind, JSON.stringify(t)).toBe('validation');
      expect((err as Error).message).toMatch(/texts\[1\] has no visible characters/);
    }
    const original = '\u200B  ｙｏｕ ａｒｅ   an i\u200Bdiot  ';
    const plain = 'you are an idiot';
    const [a, b] = (await classifier.classify({ texts: [original, plain], language: 'en', explain: true, topFeatures: 50 })).results;
    expect(a.score).toBeCloseTo(b.score, 6); // the same text once normalised
    expect(a.tokens).toBe(b.tokens);
    for (const f of a.explanation!) for (const [s, e] of f.spans) {
      expect(s).toBeGreaterThanOrEqual(0);
      expect(e).toBeLessThanOrEqual(original.length);
      expect(original.slice(s, e).trim().length).toBeGreaterThan(0);
    }
    const covered = a.explanation!.flatMap((f) => f.spans.map(([s, e]) => original.slice(s, e))).join(' ');
    expect(covered).toMatch(/ｙｏｕ|ａｒｅ/);
  });
});

describe('feature labels', () => {
  it('records top activating contexts for every feature the heads use, by language, and a label', () => {
    const labels = bundle.featureLabels!;
    expect(labels.snippets).toBe(true);
    const used = new Set<number>();
    const { dSae, parts } = bundle.head.transform;
    for (let b = 0; b < parts.length; b++) for (let f = 0; f < dSae; f++) if (bundle.head.weights[b * dSae + f] !== 0) used.add(f);
    expect(labels.features.size).toBe([...used].filter((f) => labels.get(f)).length);
    expect(labels.features.size).toBeGreaterThan(0.9 * used.size);
    const [id, l] = [...labels.features][0];
    expect(used.has(id)).toBe(true);
    expect(l.label).toMatch(/^fires on "/);
    expect(l.tokens.length).toBeGreaterThan(0);
    expect(Object.keys(l.byLanguage).every((lang) => ['en', 'de'].includes(lang))).toBe(true);
    expect(l.snippets!.every((s) => /\[.+\]/su.test(s))).toBe(true);
  });

  it('explanations carry each feature\'s label and top tokens beside its id and contribution', async () => {
    const r = (await classifier.classify({ texts: ['You are a stupid idiot, shut up.'], language: 'en', explain: true })).results[0];
    expect(r.explanation!.length).toBeGreaterThan(0);
    for (const f of r.explanation!) {
      expect(typeof f.id).toBe('number');
      expect(f.label).toBe(bundle.featureLabels!.get(f.id)!.label);
      expect(f.topTokens).toEqual(bundle.featureLabels!.get(f.id)!.tokens);
    }
  });

  it('`toxscope features --describe` prints them; without stored text only tokens are kept', async () => {
    let stdout = '';
    const io = { stdout: (t: string) => void (stdout += t), stderr: () => {} };
    expect(await main(['features', '--describe', '--bundle', join(work, 'bundle'), '--top', '3', '--data-dir', work], io)).toBe(0);
    expect(stdout).toMatch(/toxicity head, 3 features/);
    expect(stdout.match(/^#\d+ +weight -?\d+\.\d+ +fires on "/gm)?.length).toBe(3);
    expect(stdout).toMatch(/^ {4}(en|de): fired in \d+ texts;/m);
    stdout = '';
    expect(await main(['features', '--describe', '--bundle', join(work, 'bundle'), '--json', '--attribute', 'identity_attack', '--top', '2', '--data-dir', work], io)).toBe(0);
    expect(JSON.parse(stdout).features).toHaveLength(2);

    const tokensOnly = join(work, 'tokens-only');
    const rows = readLabeled(join(repoRoot, 'fixtures', 'data', 'train', 'davidson_en.jsonl')).slice(0, 120);
    await trainBundle({
      data: rows, storeText: false, modelDir: goldenCheckpointDir, saePath: join(goldensDir, 'sae-saelens-L2'), layer: 2, out: tokensOnly,
      name: 'tok', seed: 1, cacheDir: join(work, 'graph-cache'), threads: 1, windowTokens: 64, windowOverlap: 8,
    });
    const file = JSON.parse(readFileSync(join(tokensOnly, 'features.json'), 'utf8'));
    expect(file.snippets).toBe(false);
    const entries = Object.values(file.features) as { snippets?: string[]; tokens: string[] }[];
    expect(entries.length).toBeGreaterThan(0);
    expect(entries.every((e) => e.snippets === undefined && e.tokens.length > 0)).toBe(true);
  }, 300_000);
});
