/**
 * Everything downstream of the engine on a Qwen3.5 checkpoint (tiny, real layout, its own tokenizer.json) with a
 * Qwen-Scope-format SAE: `toxscope residual` and `features` from text, `train` (the manifest records the family),
 * `eval`, and the service: /info reports the family and /v1/classify scores.
 */
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeSyntheticQwenScopeSae } from '../src/bundle/demo/synthetic-sae.js';
import { readBundle } from '../src/bundle/load.js';
import { main as cli } from '../src/cli/main.js';
import { loadConfig } from '../src/config.js';
import { readLabeled } from '../src/data/labeled.js';
import { startService } from '../src/main.js';
import { SafetensorsFile } from '../src/model/safetensors.js';
import { createLogger } from '../src/util/logger.js';
import { Rng } from '../src/util/random.js';
import { type TinyQwen35, tinyQwen35Checkpoint } from './helpers/tiny-qwen35.js';

const root = mkdtempSync(join(tmpdir(), 'toxscope-qwen35-down-'));
const LAYER = 3;
let ck: TinyQwen35;
let saePath: string;
let dataFile: string;
const bundleDir = join(root, 'bundle');

function captureIO() {
  const out = { stdout: '', stderr: '' };
  return { out, io: { stdout: (t: string) => void (out.stdout += t), stderr: (t: string) => void (out.stderr += t) } };
}

/** A random Qwen-Scope SAE file (layer{L}.sae.pt) in a release-named directory (k 16 from the name). */
function writeQwenScopeSae(dModel: number, dSae: number): string {
  const rng = new Rng(5);
  const path = join(root, 'SAE-Res-Qwen3.5-Tiny-Base-W256-L0_16', `layer${LAYER}.sae.pt`);
  writeSyntheticQwenScopeSae(path, { dModel, dSae, directions: rng.normalArray(dSae * dModel, 1), bias: new Float32Array(dSae).fill(-0.05) });
  return path;
}

beforeAll(() => {
  mkdirSync(join(root, 'Qwen3.5-Tiny'));
  ck = tinyQwen35Checkpoint({ hiddenSize: 32, numLayers: 4, vocabSize: 512, tokenizer: true, dir: join(root, 'Qwen3.5-Tiny') });
  saePath = writeQwenScopeSae(32, 256);
  const rows = [...readLabeled('fixtures/data/train/davidson_en.jsonl'), ...readLabeled('fixtures/data/train/germeval2018_de_train.jsonl')];
  const pick = (lang: string, label: number) => rows.filter((r) => r.lang === lang && r.label === label).slice(0, 20);
  dataFile = join(root, 'sample.jsonl');
  writeFileSync(dataFile, [...pick('en', 0), ...pick('en', 1), ...pick('de', 0), ...pick('de', 1)].map((r) => JSON.stringify(r)).join('\n') + '\n');
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('Qwen3.5 downstream', () => {
  it('toxscope residual and features tokenize text with the checkpoint\'s own tokenizer', async () => {
    const { out, io } = captureIO();
    const resid = join(root, 'resid.safetensors');
    const args = ['--model', ck.dir, '--layer', String(LAYER), '--text', 'Hello world', '--text', 'Guten Morgen', '--cache-dir', join(root, 'cache'), '--threads', '1'];
    expect(await cli(['residual', ...args, '--out', resid], io), out.stderr).toBe(0);
    const st = SafetensorsFile.open(resid);
    expect(st.info('resid_post').shape.slice(0, 1).concat(st.info('resid_post').shape[2])).toEqual([2, 32]);
    expect(st.readF32('resid_post').every(Number.isFinite)).toBe(true);
    st.close();
    const feats = join(root, 'features.safetensors');
    expect(await cli(['features', ...args, '--sae', saePath, '--check', '--out', feats], io), out.stderr).toBe(0);
    const f = SafetensorsFile.open(feats);
    expect(f.info('firing_rates').shape).toEqual([2, 256]);
    f.close();
  });

  it('train writes a bundle whose manifest records the qwen3_5 family; eval reads it back', async () => {
    const { out, io } = captureIO();
    const code = await cli(['train', '--data', dataFile, '--model', ck.dir, '--sae', saePath, '--layer', String(LAYER), '--out', bundleDir, '--data-dir', join(root, 'data-train'), '--seed', '2'], io);
    expect(code, out.stderr).toBe(0);
    const manifest = JSON.parse(readFileSync(join(bundleDir, 'manifest.json'), 'utf8'));
    expect(manifest.model).toMatchObject({ family: 'qwen3_5', num_layers: 4, hidden_size: 32 });
    expect(manifest.k).toBe(16); // from the release name
    expect(readBundle(bundleDir).manifest.model.family).toBe('qwen3_5');
    const ev = captureIO();
    expect(await cli(['eval', '--bundle', bundleDir, '--data', dataFile, '--json', '--data-dir', join(root, 'data-eval'), '--threads', '1'], ev.io), ev.out.stderr).toBe(0);
    expect(JSON.parse(ev.out.stdout).overall.n).toBe(80);
  });

  it('refuses a bundle whose manifest names another family than its model', () => {
    const m = JSON.parse(readFileSync(join(bundleDir, 'manifest.json'), 'utf8'));
    const edited = join(root, 'bundle-edited');
    cpSync(bundleDir, edited, { recursive: true });
    writeFileSync(join(edited, 'manifest.json'), JSON.stringify({ ...m, model: { ...m.model, family: 'qwen3' } }));
    expect(() => readBundle(edited)).toThrow(/the manifest says the model is a qwen3 checkpoint but .*config\.json is qwen3_5/);
  });

  it('serves it: /info reports the family, /v1/classify scores with the checkpoint\'s tokenizer', async () => {
    const config = loadConfig({ env: { PORT: '0', HOST: '127.0.0.1', TOXSCOPE_BUNDLE: bundleDir, TOXSCOPE_DATA_DIR: join(root, 'data'), TOXSCOPE_THREADS: '1', TOXSCOPE_ADMIN_TOKEN: 'qwen35-downstream-admin-token' } });
    const svc = await startService(config, createLogger('silent'));
    try {
      await svc.ready;
      const info = (await (await fetch(`${svc.url}/info`)).json()) as { model: { family: string; num_layers: number }; layer: number };
      expect(info.model).toMatchObject({ family: 'qwen3_5', num_layers: 4 });
      expect(info.layer).toBe(LAYER);
      const res = await fetch(`${svc.url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ texts: ['you are an idiot', 'Guten Morgen zusammen'] }) });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { results: { score: number }[] };
      expect(body.results).toHaveLength(2);
      for (const r of body.results) expect(r.score).toBeGreaterThanOrEqual(0);
    } finally {
      await svc.shutdown('test done');
    }
  });
});
