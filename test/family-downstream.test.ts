/**
 * Everything downstream of the engine works on a Qwen3-MoE checkpoint as on dense Qwen3: `residual` and
 * `features` on the CLI, a trained bundle whose manifest records the family, `eval` and `discover` on it, and the
 * service serving it with /info naming the family. The checkpoint is a tiny random qwen3_moe with Qwen3's
 * vocabulary (so the packaged Qwen3 tokenizer applies) and a random SAELens TopK SAE at layer 1.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readBundle } from '../src/bundle/load.js';
import { trainBundle } from '../src/bundle/train-bundle.js';
import { main } from '../src/cli/main.js';
import { loadConfig } from '../src/config.js';
import { readLabeled } from '../src/data/labeled.js';
import { startService } from '../src/main.js';
import { SafetensorsFile, writeSafetensors } from '../src/model/safetensors.js';
import { createLogger } from '../src/util/logger.js';
import { Rng } from '../src/util/random.js';
import { repoRoot } from './helpers/goldens.js';
import { tinyMoeCheckpoint } from './helpers/tiny-moe-checkpoint.js';

const root = mkdtempSync(join(tmpdir(), 'toxscope-family-downstream-'));
const moe = tinyMoeCheckpoint({ vocabSize: 151936, hiddenSize: 32, numLayers: 3, numExperts: 4, topK: 2, expertWidth: 16, seed: 21 });
const saeDir = join(root, 'sae');
const bundleDir = join(root, 'bundle');
const dataFile = join(root, 'sample.jsonl');
const cacheDir = join(root, 'cache');
afterAll(() => {
  moe.cleanup();
  rmSync(root, { recursive: true, force: true });
});

async function cli(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '', stderr = '';
  const code = await main(argv, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
  return { code, stdout, stderr };
}

beforeAll(async () => {
  mkdirSync(saeDir);
  const D = 32, S = 256, rng = new Rng(4);
  const f32 = (shape: number[], data: Float32Array) => ({ dtype: 'F32' as const, shape, data });
  writeFileSync(join(saeDir, 'cfg.json'), JSON.stringify({ d_in: D, d_sae: S, k: 8, hook_layer: 1, architecture: 'topk', apply_b_dec_to_input: false }));
  writeSafetensors(join(saeDir, 'sae_weights.safetensors'), {
    W_enc: f32([D, S], rng.normalArray(D * S, 1)), b_enc: f32([S], new Float32Array(S)),
    W_dec: f32([S, D], rng.normalArray(S * D, 0.1)), b_dec: f32([D], new Float32Array(D)),
  });
  const rows = readLabeled(join(repoRoot, 'fixtures', 'data', 'train')).filter((t) => t.lang === 'en' || t.lang === 'de');
  const sample = [0, 1].flatMap((label) => ['en', 'de'].flatMap((lang) => rows.filter((t) => t.label === label && t.lang === lang).slice(0, 20)));
  writeFileSync(dataFile, sample.map((r) => JSON.stringify({ text: r.text, label: r.label, lang: r.lang })).join('\n') + '\n');
  await trainBundle({ data: dataFile, modelDir: moe.dir, saePath: saeDir, layer: 1, out: bundleDir, name: 'moe-bundle', seed: 1, cacheDir, threads: 1, windowTokens: 64, windowOverlap: 8 });
});

describe('a qwen3_moe checkpoint downstream of the engine', () => {
  it('residual and features on the CLI', async () => {
    const r = await cli('residual', '--model', moe.dir, '--layer', '1', '--text', 'hello there', '--text', 'guten Tag', '--out', join(root, 'r.safetensors'), '--cache-dir', cacheDir, '--threads', '1');
    expect(r.code, r.stderr).toBe(0);
    const st = SafetensorsFile.open(join(root, 'r.safetensors'));
    expect([...st.tensors.keys()]).toContain('attention_mask');
    st.close();
    const f = await cli('features', '--model', moe.dir, '--sae', saeDir, '--layer', '1', '--text', 'hello there', '--check', '--out', join(root, 'f.safetensors'), '--cache-dir', cacheDir, '--threads', '1');
    expect(f.code, f.stderr).toBe(0);
  });

  it('a trained bundle records the family; a manifest naming another family is refused', () => {
    const b = readBundle(bundleDir);
    expect(b.manifest.model.family).toBe('qwen3_moe');
    const m = JSON.parse(JSON.stringify(b.manifest));
    m.model.family = 'qwen3';
    const other = join(root, 'other-family');
    mkdirSync(other);
    for (const f of ['head.json', 'rule.json', 'features.json', 'attributes.json']) if (existsSync(join(bundleDir, f))) writeFileSync(join(other, f), readFileSync(join(bundleDir, f)));
    m.model.path = moe.dir;
    m.sae.path = saeDir;
    writeFileSync(join(other, 'manifest.json'), JSON.stringify(m));
    expect(() => readBundle(other)).toThrow(`${other}: the manifest says the model is a qwen3 checkpoint but ${moe.dir}/config.json is qwen3_moe`);
  });

  it('eval and discover run on it', async () => {
    const e = await cli('eval', '--bundle', bundleDir, '--data', dataFile, '--json', '--data-dir', join(root, 'data-dir'), '--threads', '1');
    expect(e.code, e.stderr).toBe(0);
    expect(JSON.parse(e.stdout).overall.n).toBe(80);
    const d = await cli('discover', '--data', dataFile, '--bundle', bundleDir, '--json', '--data-dir', join(root, 'data-dir'), '--threads', '1');
    expect(d.code, d.stderr).toBe(0);
  });

  it('is served, and /info names the family', async () => {
    const config = loadConfig({ env: { PORT: '0', HOST: '127.0.0.1', TOXSCOPE_BUNDLE: bundleDir, TOXSCOPE_DATA_DIR: join(root, 'serve'), TOXSCOPE_ADMIN_TOKEN: 'family-test-admin-token-123', TOXSCOPE_THREADS: '1' } });
    const svc = await startService(config, createLogger('silent'));
    try {
      await svc.ready;
      const info = (await (await fetch(`${svc.url}/info`)).json()) as { model: { family: string; num_layers: number } };
      expect(info.model).toMatchObject({ family: 'qwen3_moe', num_layers: 3 });
      const res = await fetch(`${svc.url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ texts: ['you are an idiot'] }) });
      expect(res.status).toBe(200);
    } finally {
      await svc.shutdown('test done');
    }
  });
});
