import { readFileSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { assertRunnableTo, Checkpoint } from '../src/model/checkpoint.js';
import { Qwen3Config, parseQwen3Config } from '../src/model/families/qwen3.js';
import { readModelConfig } from '../src/model/families/registry.js';
import { SafetensorsFile, TensorToWrite, writeSafetensors } from '../src/model/safetensors.js';
import { goldenCheckpointDir, goldenShardedCheckpointDir } from './helpers/goldens.js';
import { TinyCheckpointOptions, tinyCheckpoint } from './helpers/tiny-checkpoint.js';

const made: { cleanup(): void }[] = [];
afterEach(() => made.splice(0).forEach((c) => c.cleanup()));
function tiny(opts: TinyCheckpointOptions = {}) {
  const t = tinyCheckpoint(opts);
  made.push(t);
  return t;
}

/** Rewrite one safetensors file through `edit` (tensor name -> tensor; delete or replace entries). */
function rewrite(path: string, edit: (tensors: Record<string, TensorToWrite>) => void): void {
  const st = SafetensorsFile.open(path);
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, info] of st.tensors) tensors[name] = { dtype: info.dtype, shape: info.shape, data: st.readBytes(name) };
  st.close();
  edit(tensors);
  writeSafetensors(path, tensors);
}

/** Bit-identical float arrays (fast on the 151936 x 64 embedding, unlike a deep toEqual). */
function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

function editConfig(dir: string, edit: (c: Record<string, unknown>) => void): void {
  const path = join(dir, 'config.json');
  const c = JSON.parse(readFileSync(path, 'utf8'));
  edit(c);
  writeFileSync(path, JSON.stringify(c));
}

describe('Checkpoint.open', () => {
  it('reads the golden checkpoint, single-file and sharded, to the same values', () => {
    const single = Checkpoint.open(goldenCheckpointDir);
    const sharded = Checkpoint.open(goldenShardedCheckpointDir);
    try {
      expect(single.config).toMatchObject({ hiddenSize: 64, numLayers: 4, numHeads: 4, numKvHeads: 2, headDim: 16, vocabSize: 151936, tieWordEmbeddings: true });
      expect(single.names().sort()).toEqual(sharded.names().sort());
      expect(single.names()).toHaveLength(2 + 4 * 11); // embed + norm + 11 per layer
      expect(sharded.fileNames()).toHaveLength(3);
      for (const name of single.names()) expect(sameBits(sharded.readF32(name), single.readF32(name)), name).toBe(true);
      assertRunnableTo(single, single.arch, 3);
      assertRunnableTo(sharded, sharded.arch, 3);
    } finally {
      single.close();
      sharded.close();
    }
  });

  it('reads a tiny checkpoint written as one file or as shards to the same values, bf16 and f32', () => {
    for (const dtype of ['BF16', 'F32'] as const) {
      const a = tiny({ dtype, seed: 3 });
      const b = tiny({ dtype, seed: 3, shards: 3 });
      const ca = Checkpoint.open(a.dir), cb = Checkpoint.open(b.dir);
      try {
        expect(cb.fileNames().map((f) => f.split('/').pop())).toEqual(['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors']);
        expect(ca.info('model.norm.weight').dtype).toBe(dtype);
        for (const name of ca.names()) expect(sameBits(cb.readF32(name), ca.readF32(name)), name).toBe(true);
      } finally {
        ca.close();
        cb.close();
      }
    }
  });

  it('takes head_dim from config.json even when heads x head_dim differs from hidden_size', () => {
    const t = tiny({ hiddenSize: 24, numHeads: 4, numKvHeads: 1, headDim: 10 });
    const c = Checkpoint.open(t.dir);
    try {
      expect((c.config as Qwen3Config).headDim).toBe(10);
      expect(c.info('model.layers.0.self_attn.q_proj.weight').shape).toEqual([40, 24]);
      assertRunnableTo(c, c.arch, 1);
    } finally {
      c.close();
    }
  });

  it('derives head_dim = hidden_size / heads when config.json has none', () => {
    const t = tiny({ hiddenSize: 32, numHeads: 4, headDim: 8 });
    editConfig(t.dir, (c) => delete c.head_dim);
    expect((readModelConfig(t.dir).config as Qwen3Config).headDim).toBe(8);
  });

  it('ignores lm_head.weight of an untied checkpoint', () => {
    const t = tiny({ tieWordEmbeddings: false });
    const c = Checkpoint.open(t.dir);
    try {
      expect(c.has('lm_head.weight')).toBe(true);
      expect([...c.arch.requiredTensors(1).keys()]).not.toContain('lm_head.weight');
      assertRunnableTo(c, c.arch, 1);
    } finally {
      c.close();
    }
  });
});

describe('checkpoint failures each get their own message', () => {
  it('a missing directory, a missing config.json, a directory without weights', () => {
    expect(() => Checkpoint.open('/nonexistent/model')).toThrow('/nonexistent/model: model directory does not exist');
    const t = tiny();
    unlinkSync(join(t.dir, 'model.safetensors'));
    writeFileSync(join(t.dir, 'other.safetensors'), '');
    expect(() => Checkpoint.open(t.dir)).toThrow(`${t.dir}: no model.safetensors and no model.safetensors.index.json (found other.safetensors)`);
    unlinkSync(join(t.dir, 'config.json'));
    expect(() => Checkpoint.open(t.dir)).toThrow(new RegExp(`${join(t.dir, 'config.json')}: cannot read the model config`));
  });

  it('a truncated weights file', () => {
    const t = tiny();
    const path = join(t.dir, 'model.safetensors');
    truncateSync(path, 4000);
    expect(() => Checkpoint.open(t.dir)).toThrow(new RegExp(`${path}: tensor '[^']+': data ends at byte \\d+ of the data section but only \\d+ bytes are present \\(truncated file\\?\\)`));
  });

  it('a truncated shard names the shard', () => {
    const t = tiny({ shards: 2 });
    const path = join(t.dir, 'model-00002-of-00002.safetensors');
    truncateSync(path, 100);
    expect(() => Checkpoint.open(t.dir)).toThrow(new RegExp(`${path}: truncated safetensors file`));
  });

  it('a missing tensor, listed by name', () => {
    const t = tiny({ numLayers: 3 });
    rewrite(join(t.dir, 'model.safetensors'), (ts) => delete ts['model.layers.1.mlp.up_proj.weight']);
    const c = Checkpoint.open(t.dir);
    try {
      assertRunnableTo(c, c.arch, 0); // layers past the target are not needed
      expect(() => assertRunnableTo(c, c.arch, 1)).toThrow(`${t.dir}: checkpoint is missing 1 tensor(s) needed up to layer 1: model.layers.1.mlp.up_proj.weight`);
      expect(() => c.readF32('model.layers.1.mlp.up_proj.weight')).toThrow(`${t.dir}: checkpoint has no tensor 'model.layers.1.mlp.up_proj.weight'`);
    } finally {
      c.close();
    }
  });

  it('a tensor with the wrong shape', () => {
    const t = tiny({ hiddenSize: 32, numHeads: 4, numKvHeads: 2, headDim: 8 });
    const path = join(t.dir, 'model.safetensors');
    rewrite(path, (ts) => {
      const k = ts['model.layers.0.self_attn.k_proj.weight'];
      ts['model.layers.0.self_attn.k_proj.weight'] = { ...k, shape: [32, 16] }; // transposed [out, in]
    });
    const c = Checkpoint.open(t.dir);
    try {
      expect(() => assertRunnableTo(c, c.arch, 0)).toThrow(`${path}: tensor 'model.layers.0.self_attn.k_proj.weight' has shape [32,16] but config.json implies [16,32]`);
    } finally {
      c.close();
    }
  });

  it('a weight stored as integers', () => {
    const t = tiny({ hiddenSize: 32 });
    const path = join(t.dir, 'model.safetensors');
    rewrite(path, (ts) => {
      ts['model.layers.0.input_layernorm.weight'] = { dtype: 'I32', shape: [32], data: new Int32Array(32) };
    });
    const c = Checkpoint.open(t.dir);
    try {
      expect(() => assertRunnableTo(c, c.arch, 0)).toThrow(`${path}: tensor 'model.layers.0.input_layernorm.weight' has dtype I32, expected a float type`);
    } finally {
      c.close();
    }
  });

  it('a layer past the model\'s depth', () => {
    const t = tiny({ numLayers: 2 });
    const c = Checkpoint.open(t.dir);
    try {
      expect(() => assertRunnableTo(c, c.arch, 2)).toThrow(`${t.dir}: layer 2 is out of range: the model has 2 decoder layers (0..1)`);
      expect(() => assertRunnableTo(c, c.arch, -1)).toThrow(/layer -1 is out of range/);
    } finally {
      c.close();
    }
  });

  for (const [type, message] of [
    // a flat (Qwen3-style) config under the qwen3_5 families: the family reads text_config and says it is missing
    ['qwen3_5', 'a qwen3_5 config must nest the language model\'s settings in "text_config"'],
    ['qwen3_5_moe', 'a qwen3_5_moe config must nest the language model\'s settings in "text_config"'],
  ]) {
    it(`refuses model_type ${type}`, () => {
      const t = tiny();
      editConfig(t.dir, (c) => (c.model_type = type));
      expect(() => Checkpoint.open(t.dir)).toThrow(`${join(t.dir, 'config.json')}: ${message}`);
    });
  }

  it('a Qwen3 config relabelled qwen3_moe is parsed by the Qwen3-MoE family and refused for its missing expert keys', () => {
    const t = tiny();
    editConfig(t.dir, (c) => (c.model_type = 'qwen3_moe'));
    expect(() => Checkpoint.open(t.dir)).toThrow(new RegExp(`^${join(t.dir, 'config.json')}: not a Qwen3-MoE config \\(num_experts: `));
  });

  it('refuses an unknown model_type, or none, naming the supported families', () => {
    const t = tiny();
    editConfig(t.dir, (c) => (c.model_type = 'llama'));
    expect(() => Checkpoint.open(t.dir)).toThrow(`${join(t.dir, 'config.json')}: unknown model_type 'llama' (supported: qwen3, qwen3_moe`);
    editConfig(t.dir, (c) => delete c.model_type);
    expect(() => Checkpoint.open(t.dir)).toThrow(`${join(t.dir, 'config.json')}: has no model_type string: cannot tell the model family`);
  });

  it('refuses sliding-window attention, and accepts the full-attention settings real Qwen3 configs carry', () => {
    const t = tiny();
    editConfig(t.dir, (c) => Object.assign(c, { use_sliding_window: false, sliding_window: null, max_window_layers: 28, layer_types: ['full_attention', 'full_attention'] }));
    Checkpoint.open(t.dir).close();
    editConfig(t.dir, (c) => (c.use_sliding_window = true));
    expect(() => Checkpoint.open(t.dir)).toThrow(/sliding-window attention .* is not supported/);
    editConfig(t.dir, (c) => Object.assign(c, { use_sliding_window: false, layer_types: ['full_attention', 'sliding_attention'] }));
    expect(() => Checkpoint.open(t.dir)).toThrow(/sliding-window attention .* is not supported/);
  });

  it('a sharded index pointing at a missing file', () => {
    const t = tiny({ shards: 2 });
    const missing = join(t.dir, 'model-00002-of-00002.safetensors');
    rmSync(missing);
    expect(() => Checkpoint.open(t.dir)).toThrow(new RegExp(`${missing}: cannot open safetensors file`));
  });

  it('a sharded index naming a tensor the shard does not hold', () => {
    const t = tiny({ shards: 2 });
    const index = join(t.dir, 'model.safetensors.index.json');
    const j = JSON.parse(readFileSync(index, 'utf8'));
    j.weight_map['model.layers.0.mlp.extra.weight'] = 'model-00001-of-00002.safetensors';
    writeFileSync(index, JSON.stringify(j));
    expect(() => Checkpoint.open(t.dir)).toThrow(`${join(t.dir, 'model-00001-of-00002.safetensors')}: index says it holds 'model.layers.0.mlp.extra.weight' but it does not`);
  });

  it('a corrupted or escaping sharded index', () => {
    const t = tiny({ shards: 2 });
    const index = join(t.dir, 'model.safetensors.index.json');
    writeFileSync(index, '{"weight_map": ');
    expect(() => Checkpoint.open(t.dir)).toThrow(new RegExp(`${index}: not valid JSON`));
    writeFileSync(index, '{"metadata": {}}');
    expect(() => Checkpoint.open(t.dir)).toThrow(`${index}: has no weight_map object`);
    writeFileSync(index, JSON.stringify({ weight_map: { 'model.norm.weight': '../elsewhere.safetensors' } }));
    expect(() => Checkpoint.open(t.dir)).toThrow(`${index}: weight_map entry for 'model.norm.weight' is not a file name in the directory`);
  });
});

describe('Qwen3 config.json', () => {
  const base = JSON.parse(readFileSync(join(goldenCheckpointDir, 'config.json'), 'utf8'));

  it('parses the golden config', () => {
    expect(parseQwen3Config(base)).toEqual({
      hiddenSize: 64, intermediateSize: 128, numLayers: 4, numHeads: 4, numKvHeads: 2, headDim: 16,
      rmsNormEps: 1e-6, ropeTheta: 1e6, vocabSize: 151936, tieWordEmbeddings: true, torchDtype: 'bfloat16',
    });
  });

  it('names the missing or invalid field', () => {
    const { hidden_size: _, ...noHidden } = base;
    expect(() => parseQwen3Config(noHidden, 'm/config.json')).toThrow(/^m\/config\.json: not a Qwen3 config \(hidden_size: /);
    expect(() => parseQwen3Config({ ...base, model_type: 'llama' }, 'm/config.json')).toThrow(/not a Qwen3 config \(model_type: /);
    expect(() => parseQwen3Config({ ...base, num_key_value_heads: 3 })).toThrow('num_attention_heads 4 is not a multiple of num_key_value_heads 3');
    expect(() => parseQwen3Config({ ...base, head_dim: 15 })).toThrow('head_dim 15 must be an even integer');
    expect(() => parseQwen3Config({ ...base, rope_scaling: { rope_type: 'yarn', factor: 4 } })).toThrow(/rope_scaling .* is not supported \(plain RoPE only\)/);
    expect(() => parseQwen3Config({ ...base, attention_bias: true })).toThrow(/attention_bias=true is not supported/);
  });

  it('reports config.json that is not JSON', () => {
    const t = tiny();
    writeFileSync(join(t.dir, 'config.json'), '{"model_type": "qwen3",');
    expect(() => readModelConfig(t.dir)).toThrow(new RegExp(`${join(t.dir, 'config.json')}: not valid JSON`));
  });
});
