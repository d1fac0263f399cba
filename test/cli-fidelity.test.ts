/**
 * `toxscope fidelity`: a bundle served at int8 against float32 on labeled texts, through the CLI, on a bundle trained
 * here (golden tiny checkpoint + SAELens SAE).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/cli/main.js';
import { readLabeled } from '../src/data/labeled.js';
import { repoRoot } from './helpers/goldens.js';
import { trainServeBundle } from './helpers/serve-bundle.js';

const work = mkdtempSync(join(tmpdir(), 'toxscope-fidelity-'));
const bundleDir = join(work, 'bundle');
const dataFile = join(work, 'held-out.jsonl');

beforeAll(async () => {
  await trainServeBundle(bundleDir, 'fidelity-test', join(work, 'data', 'graph-cache'));
  // texts the bundle was not trained on: the trainer takes the first 60 per label and language
  const texts = readLabeled(join(repoRoot, 'fixtures', 'data', 'train')).filter((t) => t.lang === 'en');
  const held = [0, 1].flatMap((label) => texts.filter((t) => t.label === label).slice(60, 75));
  writeFileSync(dataFile, held.map((t) => JSON.stringify({ text: t.text, label: t.label, lang: t.lang })).join('\n'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

function captureIO() {
  const out = { stdout: '', stderr: '' };
  return { out, io: { stdout: (t: string) => void (out.stdout += t), stderr: (t: string) => void (out.stderr += t) } };
}

describe('toxscope fidelity', () => {
  it('reports int8 against float32: residual error, fired-set agreement, firing rates and head changes (no certified share: the int8 graph encodes with the float32 Gemm)', async () => {
    const { out, io } = captureIO();
    const code = await main(['fidelity', '--bundle', bundleDir, '--data', dataFile, '--json', '--data-dir', join(work, 'data'), '--threads', '1'], io);
    expect(code, out.stderr).toBe(0);
    const r = JSON.parse(out.stdout);
    expect(r).toMatchObject({ precision: 'int8', reference: 'f32', texts: 30 });
    expect(r.residual.tokens).toBeGreaterThan(100);
    expect(r.residual.rel_rms).toBeGreaterThan(0); // really a different precision
    expect(r.residual.rel_rms).toBeLessThan(0.05); // within int8 error (test/int8-engine.test.ts)
    expect(r.fired_set.fired_set_agreement).toBeGreaterThanOrEqual(0);
    expect(r.fired_set.fired_set_agreement).toBeLessThanOrEqual(1);
    expect(r.fired_set.tokens).toBe(r.residual.tokens);
    expect(r.sae_certified_fraction).toBeNull(); // the SAE step is float32 (exact), so there is nothing to certify
    expect(r.firing_rate.texts).toBe(30);
    expect(r.head.texts).toBe(30);
    expect(r.head.roc_auc_reference).not.toBeNull();
    expect(r.head.roc_auc_change).toBeCloseTo(r.head.roc_auc_candidate - r.head.roc_auc_reference, 12);
  });

  it('compared with itself (f32 against f32) everything agrees exactly', async () => {
    const { out, io } = captureIO();
    const code = await main(['fidelity', '--bundle', bundleDir, '--data', dataFile, '--json', '--precision', 'f32', '--limit', '10', '--data-dir', join(work, 'data'), '--threads', '1'], io);
    expect(code, out.stderr).toBe(0);
    const r = JSON.parse(out.stdout);
    expect(r.residual.max_abs).toBe(0);
    expect(r.fired_set.fired_set_agreement).toBe(1);
    expect(r.firing_rate.max_abs).toBe(0);
    expect(r.head.decision_changes).toBe(0);
    expect(r.sae_certified_fraction).toBeNull();
  });

  it('refuses an unknown precision with a usage error', async () => {
    const { out, io } = captureIO();
    expect(await main(['fidelity', '--data', dataFile, '--precision', 'int4'], io)).toBe(2);
    expect(out.stderr).toContain('--precision must be one of f32, f16, int8');
  });
});
