/**
 * Bundles: trained from labeled texts on a real (tiny) Qwen3 checkpoint + Qwen-Scope SAE, read back with
 * every binding checked, refused when any artifact is swapped, and evaluated through the CLI.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readBundle } from '../src/bundle/load.js';
import { trainBundle } from '../src/bundle/train-bundle.js';
import { main } from '../src/cli/main.js';
import { readLabeled } from '../src/data/labeled.js';
import { goldenCheckpointDir, goldenShardedCheckpointDir, goldensDir } from './helpers/goldens.js';

const QSCOPE_SAE = join(goldensDir, 'qscope-sae', 'layer2.sae.pt');
const SAELENS_SAE = join(goldensDir, 'sae-saelens-L2');
const METRIC_KEYS = ['n', 'precision', 'recall', 'f1', 'macro_f1', 'roc_auc', 'pr_auc', 'ece'];

let work: string;
let bundleDir: string;
let dataFile: string;

/** 60 toxic + 60 non-toxic posts in two languages from the product's licensed fixture sample. */
function writeSample(path: string): void {
  const rows = [...readLabeled('fixtures/data/train/davidson_en.jsonl'), ...readLabeled('fixtures/data/train/germeval2018_de_train.jsonl')];
  const pick = (lang: string, label: number) => rows.filter((r) => r.lang === lang && r.label === label).slice(0, 30);
  const sample = [...pick('en', 0), ...pick('en', 1), ...pick('de', 0), ...pick('de', 1)];
  writeFileSync(path, sample.map((r) => JSON.stringify({ text: r.text, label: r.label, lang: r.lang })).join('\n') + '\n');
}

function captureIO() {
  const out = { stdout: '', stderr: '' };
  return { out, io: { stdout: (t: string) => void (out.stdout += t), stderr: (t: string) => void (out.stderr += t) } };
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'toxscope-bundle-'));
  dataFile = join(work, 'sample.jsonl');
  writeSample(dataFile);
  bundleDir = join(work, 'bundle');
  await trainBundle({
    data: dataFile, modelDir: goldenCheckpointDir, saePath: QSCOPE_SAE, layer: 2, k: 32, out: bundleDir,
    name: 'tiny', seed: 3, cacheDir: join(work, 'graph-cache'), threads: 1,
  });
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A copy of the trained bundle with its manifest edited. */
function variant(name: string, edit: (m: Record<string, any>) => void): string {
  const dir = join(work, name);
  cpSync(bundleDir, dir, { recursive: true });
  const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
  edit(m);
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(m));
  return dir;
}

describe('a trained bundle', () => {
  it('records what it was trained for and reads back with the same head', () => {
    const b = readBundle(bundleDir);
    expect(b.manifest.layer).toBe(2);
    expect(b.manifest.k).toBe(32);
    expect(b.manifest.sae.format).toBe('qwen-scope');
    expect(b.manifest.model.family).toBe('qwen3');
    expect(b.manifest.sae.d_sae).toBe(512);
    expect(b.manifest.synthetic_backbone).toBe(false);
    expect(b.manifest.precision).toBe('f32'); // the precision its training features were computed at (auto on CPU)
    expect(b.manifest.training.n_train + b.manifest.training.n_calibration).toBe(120);
    expect(b.manifest.training.languages).toEqual(['de', 'en']);
    expect(b.head.meta.trained_for).toMatchObject({ layer: 2, k: 32, model_sha256: b.manifest.model.sha256, sae_sha256: b.manifest.sae.sha256 });
    expect(b.sae.dSae).toBe(b.head.transform.dSae);
    expect(b.rule).not.toBeNull();
    expect(Object.keys(b.manifest.baseline_f1).sort()).toEqual(['de', 'en']);
  });

  it('is refused with another SAE than the one its head was trained on', () => {
    const dir = variant('other-sae', (m) => { m.sae.path = SAELENS_SAE; m.sae.format = 'saelens'; });
    expect(() => readBundle(dir)).toThrow(/expected sha256 [0-9a-f]{64} .*sae-saelens-L2 \(a different SAE: sha256 [0-9a-f]{12}\).*retrain the head for this SAE/);
  });

  it('is refused with other model files, even holding the same weights (sharded copy)', () => {
    const dir = variant('other-model', (m) => { m.model.path = goldenShardedCheckpointDir; });
    expect(() => readBundle(dir)).toThrow(/expected sha256 [0-9a-f]{64} .*qwen3-tiny-bf16-sharded \(a different model: sha256 [0-9a-f]{12}\).*retrain the head for this model/);
  });

  it('is refused when its layer or k disagree with the head', () => {
    expect(() => readBundle(variant('other-k', (m) => { m.k = 16; }))).toThrow(/trained for layer 2, k 32 but the bundle says layer 2, k 16/);
  });

  it('is refused when head.json was edited after training', () => {
    const dir = variant('edited-head', () => {});
    const head = JSON.parse(readFileSync(join(dir, 'head.json'), 'utf8'));
    head.bias += 1;
    writeFileSync(join(dir, 'head.json'), JSON.stringify(head));
    expect(() => readBundle(dir)).toThrow(/does not match the manifest's sha256/);
  });

  it('is refused with a clear error when the manifest is malformed', () => {
    const dir = variant('bad-manifest', (m) => { delete m.model; });
    expect(() => readBundle(dir)).toThrow(/manifest\.json.*model/);
  });
});

describe('toxscope eval', () => {
  it('--json prints per-language and overall metrics for the head and the discovery rule', async () => {
    const { out, io } = captureIO();
    const code = await main(['eval', '--bundle', bundleDir, '--data', dataFile, '--json', '--data-dir', join(work, 'data-dir'), '--threads', '1'], io);
    expect(code, out.stderr).toBe(0);
    const j = JSON.parse(out.stdout);
    expect(Object.keys(j.languages).sort()).toEqual(['de', 'en']);
    for (const m of [j.overall, j.languages.en, j.languages.de, j.rule.overall, j.rule.languages.en]) expect(Object.keys(m).sort()).toEqual([...METRIC_KEYS].sort());
    expect(j.overall.n).toBe(120);
    expect(j.languages.en.n).toBe(60);
    expect(j.rule.overall.ece).toBeNull(); // the rule's score is not a probability
    expect(j.overall.roc_auc).toBeGreaterThanOrEqual(0);
    expect(j.bundle.synthetic_backbone).toBe(false);
  });

  it('exits 2 with usage on bad arguments', async () => {
    const { out, io } = captureIO();
    expect(await main(['eval', '--bundle', bundleDir], io)).toBe(2);
    expect(out.stderr).toMatch(/--data is required/);
  });
});

describe('toxscope train', () => {
  it('exits 2 when --model is given without --sae and --layer', async () => {
    const { out, io } = captureIO();
    expect(await main(['train', '--data', dataFile, '--out', join(work, 'x'), '--model', goldenCheckpointDir], io)).toBe(2);
    expect(out.stderr).toMatch(/--model, --sae and --layer go together/);
  });

  it('rejects a target precision outside (0, 1)', async () => {
    const { out, io } = captureIO();
    expect(await main(['train', '--data', dataFile, '--out', join(work, 'x'), '--target-precision', '1.5'], io)).toBe(2);
    expect(out.stderr).toMatch(/--target-precision must be a number strictly between 0 and 1/);
  });

  it('rejects an unknown pooling and names the ones it takes', async () => {
    const { out, io } = captureIO();
    expect(await main(['train', '--data', dataFile, '--out', join(work, 'x'), '--pooling', 'mean'], io)).toBe(2);
    expect(out.stderr).toMatch(/--pooling.*max-segment.*combined/);
  });

  it("trains with --pooling combined: the parts penalty chosen on the calibration split is served and recorded with its trade-off", async () => {
    const { out, io } = captureIO();
    const dir = join(work, 'cli-bundle-combined');
    const code = await main(['train', '--data', dataFile, '--out', dir, '--model', goldenCheckpointDir, '--sae', QSCOPE_SAE, '--layer', '2', '--k', '32',
      '--pooling', 'combined', '--data-dir', join(work, 'data-dir'), '--threads', '1'], io);
    expect(code, out.stderr).toBe(0);
    expect(out.stderr).toMatch(/parts penalty [0-9.]+ on the calibration split's mixtures \(among 3: kept/);
    const b = readBundle(dir);
    expect(b.head.pooling).toBe('combined');
    const d = b.manifest.metrics.dilution as { parts_penalty: number; calibration_mixtures: { pads: number }[] };
    expect(b.head.combiner).toEqual({ whole: 0, max: 1, parts: -d.parts_penalty, bias: 0 });
    expect(d.calibration_mixtures.map((p) => p.pads)).toEqual([3, 30]);
  });

  it('trains a bundle through the CLI with thresholds meeting a target precision', async () => {
    const { out, io } = captureIO();
    const dir = join(work, 'cli-bundle');
    const code = await main(['train', '--data', dataFile, '--out', dir, '--model', goldenCheckpointDir, '--sae', QSCOPE_SAE, '--layer', '2', '--k', '32',
      '--target-precision', '0.6', '--data-dir', join(work, 'data-dir'), '--threads', '1'], io);
    expect(code, out.stderr).toBe(0);
    expect(out.stdout).toMatch(/bundle written to/);
    const b = readBundle(dir);
    const choices = b.manifest.metrics.thresholds as Record<string, { precision: number; met: boolean }>;
    for (const c of Object.values(choices)) if (c.met) expect(c.precision).toBeGreaterThanOrEqual(0.6);
  });
});

describe('toxscope discover', () => {
  it('ranks class-biased features per language and writes the any-of-top-K rule', async () => {
    const { out, io } = captureIO();
    const rulePath = join(work, 'rule.json');
    const code = await main(['discover', '--model', goldenCheckpointDir, '--sae', QSCOPE_SAE, '--layer', '2', '--k', '32', '--data', dataFile,
      '--json', '--top', '5', '--out', rulePath, '--data-dir', join(work, 'data-dir'), '--threads', '1'], io);
    expect(code, out.stderr).toBe(0);
    const j = JSON.parse(out.stdout);
    expect(j.split.train + j.split.validation).toBe(120);
    expect(j.rankings.pooled.length).toBeLessThanOrEqual(5);
    for (let i = 1; i < j.rankings.pooled.length; i++) expect(j.rankings.pooled[i - 1].bias).toBeGreaterThanOrEqual(j.rankings.pooled[i].bias);
    for (const b of j.rankings.pooled) expect(b.bias).toBeCloseTo(b.pToxic - b.pNonToxic, 10);
    expect(j.rule.pooled.features.length).toBe(j.rule.pooled.k);
    expect(JSON.parse(readFileSync(rulePath, 'utf8')).format).toBe('toxscope-discovery-rule');
    expect(Object.keys(j.validation.overall)).toContain('roc_auc');
  });

  it('refuses --bundle together with --model/--sae/--layer', async () => {
    const { out, io } = captureIO();
    expect(await main(['discover', '--data', dataFile, '--bundle', bundleDir, '--model', goldenCheckpointDir, '--sae', QSCOPE_SAE, '--layer', '2'], io)).toBe(2);
    expect(out.stderr).toMatch(/not both/);
  });
});
