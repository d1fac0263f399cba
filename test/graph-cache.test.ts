/**
 * Built graphs are cached by what they depend on: a second open loads without rebuilding; another layer,
 * another SAE or changed checkpoint files get their own entry. Opening validates the checkpoint first.
 */
import { mkdtempSync, readdirSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ForwardEngine } from '../src/engine/forward-engine.js';
import { isToxScopeError } from '../src/errors.js';
import { Checkpoint } from '../src/model/checkpoint.js';
import { graphCacheKey } from '../src/model/graph-cache.js';
import { SafetensorsFile, TensorToWrite, writeSafetensors } from '../src/model/safetensors.js';
import { tinyCheckpoint } from './helpers/tiny-checkpoint.js';

const root = mkdtempSync(join(tmpdir(), 'toxscope-graph-cache-'));
const tiny = tinyCheckpoint({ numLayers: 2, vocabSize: 200, seed: 3 });
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
  tiny.cleanup();
});

const entries = (dir: string) => readdirSync(dir).filter((f) => !f.startsWith('.')).sort();
const seqs = [[3, 1, 4, 1, 5], [9, 2]];

describe('graph cache', () => {
  it('builds once, then loads the cached graph on the next open with identical results', async () => {
    const cacheDir = join(root, 'reuse');
    const first = await ForwardEngine.open({ modelDir: tiny.dir, layer: 1, cacheDir, threads: 1 });
    const a = await first.runResidual(seqs);
    await first.close();
    expect(first.info.built).toBe(true);
    expect(entries(cacheDir)).toHaveLength(1);

    const second = await ForwardEngine.open({ modelDir: tiny.dir, layer: 1, cacheDir, threads: 1 });
    const b = await second.runResidual(seqs);
    await second.close();
    expect(second.info.built).toBe(false);
    expect(second.info.modelPath).toBe(first.info.modelPath);
    expect(b.resid).toEqual(a.resid);
    expect(entries(cacheDir)).toHaveLength(1);
  });

  it('keys entries by model family and its graph version', () => {
    const ckpt = Checkpoint.open(tiny.dir);
    try {
      const { key, describe: d } = graphCacheKey(ckpt, 1, null);
      expect(key).toMatch(/^qwen3-L1-[0-9a-f]{32}$/);
      expect(d).toMatchObject({ family: 'qwen3', familyVersion: ckpt.arch.familyVersion, layer: 1 });
      const bumped = Object.assign(Object.create(ckpt), { arch: { ...ckpt.arch, familyVersion: ckpt.arch.familyVersion + 1 } }) as Checkpoint;
      expect(graphCacheKey(bumped, 1, null).key).not.toBe(key);
    } finally {
      ckpt.close();
    }
  });

  it('keys entries by layer and by the checkpoint files (a rewritten file rebuilds)', async () => {
    const cacheDir = join(root, 'keys');
    const open = async (layer: number) => {
      const e = await ForwardEngine.open({ modelDir: tiny.dir, layer, cacheDir, threads: 1 });
      await e.close();
      return e.info;
    };
    expect((await open(0)).built).toBe(true);
    expect((await open(1)).built).toBe(true);
    expect((await open(0)).built).toBe(false);
    expect(entries(cacheDir)).toHaveLength(2);
    const later = new Date(Date.now() + 60_000);
    utimesSync(join(tiny.dir, 'model.safetensors'), later, later);
    expect((await open(0)).built).toBe(true);
    expect(entries(cacheDir)).toHaveLength(3);
  });

  it('checks the checkpoint before building: a layer past the depth or a missing tensor fails with no cache entry', async () => {
    const cacheDir = join(root, 'invalid');
    const past = await ForwardEngine.open({ modelDir: tiny.dir, layer: 2, cacheDir }).catch((e) => e);
    expect(isToxScopeError(past) && past.kind).toBe('format');
    expect(past.message).toMatch(/layer 2 is out of range: the model has 2 decoder layers/);

    // The same checkpoint without one layer-1 tensor: layer 0 still opens, layer 1 names the tensor.
    const broken = tinyCheckpoint({ numLayers: 2, vocabSize: 200, seed: 3 });
    try {
      const file = join(broken.dir, 'model.safetensors');
      const st = SafetensorsFile.open(file);
      const kept: Record<string, TensorToWrite> = {};
      for (const [name, info] of st.tensors) if (name !== 'model.layers.1.mlp.down_proj.weight') kept[name] = { dtype: info.dtype, shape: info.shape, data: st.readBytes(name) };
      st.close();
      writeSafetensors(file, kept);
      await expect(ForwardEngine.open({ modelDir: broken.dir, layer: 1, cacheDir })).rejects.toThrow(/missing 1 tensor\(s\) needed up to layer 1: model.layers.1.mlp.down_proj.weight/);
      expect(readdirSync(root)).not.toContain('invalid');
      const e = await ForwardEngine.open({ modelDir: broken.dir, layer: 0, cacheDir, threads: 1 });
      await e.close();
    } finally {
      broken.cleanup();
    }
  });

  it('refuses token ids outside the vocabulary before running', async () => {
    const e = await ForwardEngine.open({ modelDir: tiny.dir, layer: 0, cacheDir: join(root, 'vocab'), threads: 1 });
    try {
      await expect(e.runResidual([[1, 2], [3, 200]])).rejects.toThrow(/sequence 1, position 1: token id 200 is outside the vocabulary \(size 200\)/);
    } finally {
      await e.close();
    }
  });
});
