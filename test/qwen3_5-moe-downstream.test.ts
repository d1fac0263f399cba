/**
 * Downstream of the engine on a Qwen3.5-MoE checkpoint (tiny, real layout, its own tokenizer.json) with a
 * Qwen-Scope-format SAE: `toxscope residual` from text, `train` (the manifest records qwen3_5_moe), `eval`.
 * The service path is the same code as for every family (test/family-downstream.test.ts, qwen3_5-downstream).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeSyntheticQwenScopeSae } from '../src/bundle/demo/synthetic-sae.js';
import { readBundle } from '../src/bundle/load.js';
import { main as cli } from '../src/cli/main.js';
import { readLabeled } from '../src/data/labeled.js';
import { SafetensorsFile } from '../src/model/safetensors.js';
import { Rng } from '../src/util/random.js';
import { writeSmallQwenTokenizer } from './helpers/tiny-qwen35.js';
import { type TinyQwen35Moe, tinyQwen35MoeCheckpoint } from './helpers/tiny-qwen35-moe.js';

const root = mkdtempSync(join(tmpdir(), 'toxscope-qwen35-moe-down-'));
const LAYER = 2;
let ck: TinyQwen35Moe;
let saePath: string;
let dataFile: string;
afterAll(() => {
  ck?.cleanup();
  rmSync(root, { recursive: true, force: true });
});

function captureIO() {
  const out = { stdout: '', stderr: '' };
  return { out, io: { stdout: (t: string) => void (out.stdout += t), stderr: (t: string) => void (out.stderr += t) } };
}

beforeAll(() => {
  ck = tinyQwen35MoeCheckpoint({ hiddenSize: 32, numLayers: 4, vocabSize: 512, seed: 71 });
  writeSmallQwenTokenizer(ck.dir, 400);
  saePath = join(root, 'SAE-Res-Qwen3.5-Tiny-A-Base-W256-L0_16', `layer${LAYER}.sae.pt`);
  mkdirSync(join(root, 'SAE-Res-Qwen3.5-Tiny-A-Base-W256-L0_16'));
  writeSyntheticQwenScopeSae(saePath, { dModel: 32, dSae: 256, directions: new Rng(5).normalArray(256 * 32, 1), bias: new Float32Array(256).fill(-0.05) });
  const rows = [...readLabeled('fixtures/data/train/davidson_en.jsonl'), ...readLabeled('fixtures/data/train/germeval2018_de_train.jsonl')];
  const pick = (lang: string, label: number) => rows.filter((r) => r.lang === lang && r.label === label).slice(0, 15);
  dataFile = join(root, 'sample.jsonl');
  writeFileSync(dataFile, [...pick('en', 0), ...pick('en', 1), ...pick('de', 0), ...pick('de', 1)].map((r) => JSON.stringify(r)).join('\n') + '\n');
});

describe('Qwen3.5-MoE downstream', () => {
  it('residual from text, a trained bundle that records the family, eval on it', async () => {
    const common = ['--cache-dir', join(root, 'cache'), '--threads', '1'];
    let c = captureIO();
    const resid = join(root, 'resid.safetensors');
    expect(await cli(['residual', '--model', ck.dir, '--layer', String(LAYER), '--text', 'Hello world', '--out', resid, ...common], c.io), c.out.stderr).toBe(0);
    const st = SafetensorsFile.open(resid);
    expect(st.readF32('resid_post').every(Number.isFinite)).toBe(true);
    st.close();
    const bundle = join(root, 'bundle');
    c = captureIO();
    expect(await cli(['train', '--data', dataFile, '--model', ck.dir, '--sae', saePath, '--layer', String(LAYER), '--out', bundle, '--data-dir', join(root, 'data'), '--threads', '1'], c.io), c.out.stderr).toBe(0);
    expect(readBundle(bundle).manifest.model.family).toBe('qwen3_5_moe');
    c = captureIO();
    expect(await cli(['eval', '--bundle', bundle, '--data', dataFile, '--json', '--data-dir', join(root, 'data'), '--threads', '1'], c.io), c.out.stderr).toBe(0);
    expect(JSON.parse(c.out.stdout).overall.n).toBe(60);
  });
});
