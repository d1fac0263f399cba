/**
 * Qwen3.5 config.json and checkpoint validation: the nested text_config as real checkpoints ship it, which layers
 * are DeltaNets, partial RoPE, and each refusal as its own clear error (text_config missing, unsupported settings,
 * missing or misshapen tensors by name, a layer past the depth).
 */
import { copyFileSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ForwardEngine } from '../src/engine/forward-engine.js';
import { assertRunnableTo, Checkpoint } from '../src/model/checkpoint.js';
import { parseQwen35Config } from '../src/model/families/qwen3_5.js';
import { parseModelConfig } from '../src/model/families/registry.js';
import { SafetensorsFile, type TensorToWrite } from '../src/model/safetensors.js';
import { goldensDir } from './helpers/goldens.js';
import { tinyQwen35Checkpoint, writeShards } from './helpers/tiny-qwen35.js';

const goldenConfig = () => JSON.parse(readFileSync(join(goldensDir, 'qwen3.5', 'qwen3.5-tiny', 'config.json'), 'utf8')) as Record<string, unknown> & { text_config: Record<string, unknown> };
const withText = (patch: Record<string, unknown>) => {
  const raw = goldenConfig();
  raw.text_config = { ...raw.text_config, ...patch };
  return raw;
};

describe('Qwen3.5 config.json', () => {
  it('parses the nested text_config of a real-format checkpoint through the registry', () => {
    const arch = parseModelConfig(goldenConfig());
    expect(arch.family).toBe('qwen3_5');
    expect(arch.embeddingName).toBe('model.language_model.embed_tokens.weight');
    const c = parseQwen35Config(goldenConfig());
    expect(c).toMatchObject({
      hiddenSize: 64, numLayers: 4, vocabSize: 2048, intermediateSize: 160, rmsNormEps: 1e-6, tieWordEmbeddings: true,
      layerTypes: ['linear_attention', 'linear_attention', 'linear_attention', 'full_attention'],
      attention: { numHeads: 4, numKvHeads: 2, headDim: 256, ropeTheta: 1e7, rotaryDim: 64 },
      deltaNet: { numKeyHeads: 4, numValueHeads: 4, keyHeadDim: 32, valueHeadDim: 32, convKernel: 4 },
    });
  });

  it('takes layer_types when present, else full attention every full_attention_interval-th layer', () => {
    expect(parseQwen35Config(withText({ full_attention_interval: 2 })).layerTypes).toEqual(['linear_attention', 'full_attention', 'linear_attention', 'full_attention']);
    const explicit = ['full_attention', 'linear_attention', 'full_attention', 'linear_attention'];
    expect(parseQwen35Config(withText({ full_attention_interval: 4, layer_types: explicit })).layerTypes).toEqual(explicit);
  });

  it('accepts the transformers 4.x spelling (rope_theta and partial_rotary_factor at the top of text_config)', () => {
    const c = parseQwen35Config(withText({ rope_parameters: undefined, rope_theta: 5e6, partial_rotary_factor: 0.5 }));
    expect(c.attention).toMatchObject({ ropeTheta: 5e6, rotaryDim: 128 });
  });

  it('refuses a config without text_config, naming the key', () => {
    const raw = goldenConfig();
    delete (raw as Record<string, unknown>).text_config;
    expect(() => parseModelConfig(raw, 'x/config.json')).toThrow(/x\/config\.json: a qwen3_5 config must nest the language model's settings in "text_config"/);
  });

  it('refuses settings it would compute differently, each with its own message', () => {
    expect(() => parseQwen35Config(withText({ layer_types: ['linear_attention'] }))).toThrow(/layer_types has 1 entries for 4 layers/);
    expect(() => parseQwen35Config(withText({ layer_types: ['linear_attention', 'sliding_attention', 'linear_attention', 'full_attention'] }))).toThrow(/layer_types\[1\] is 'sliding_attention'/);
    expect(() => parseQwen35Config(withText({ linear_num_value_heads: 6 }))).toThrow(/linear_num_value_heads 6 is not a multiple of linear_num_key_heads 4/);
    expect(() => parseQwen35Config(withText({ attn_output_gate: false }))).toThrow(/attn_output_gate=false is not supported/);
    expect(() => parseQwen35Config(withText({ rope_parameters: { rope_type: 'yarn', rope_theta: 1e7, factor: 4 } }))).toThrow(/rope_type 'yarn' is not supported/);
    expect(() => parseQwen35Config(withText({ rope_parameters: {} }))).toThrow(/no rope_theta/);
    expect(() => parseQwen35Config(withText({ linear_conv_kernel_dim: undefined }))).toThrow(/text_config: not a Qwen3.5 text config \(linear_conv_kernel_dim/);
    expect(() => parseQwen35Config(withText({ intermediate_size: undefined }))).toThrow(/intermediate_size/);
    expect(() => parseQwen35Config(withText({ model_type: 'qwen3_5_moe_text' }))).toThrow(/text_config.model_type is "qwen3_5_moe_text", expected "qwen3_5_text"/);
  });
});

describe('Qwen3.5 checkpoint validation', () => {
  const ck = tinyQwen35Checkpoint({ numLayers: 4 });
  afterAll(() => ck.cleanup());

  /** A copy of the tiny checkpoint with `edit` applied to its tensors. */
  function edited(name: string, edit: (t: Record<string, TensorToWrite>) => void): string {
    const dir = join(ck.dir, name);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir);
    const st = SafetensorsFile.open(join(ck.dir, 'model.safetensors'));
    const tensors: Record<string, TensorToWrite> = {};
    for (const [n, info] of st.tensors) tensors[n] = { dtype: info.dtype, shape: info.shape, data: st.readBytes(n) };
    st.close();
    edit(tensors);
    writeShards(dir, tensors, 1);
    copyFileSync(join(ck.dir, 'config.json'), join(dir, 'config.json'));
    return dir;
  }

  it('names a missing DeltaNet tensor', () => {
    const dir = edited('missing', (t) => delete t['model.language_model.layers.1.linear_attn.A_log']);
    const c = Checkpoint.open(dir);
    try {
      expect(() => assertRunnableTo(c, c.arch, 0)).not.toThrow();
      expect(() => assertRunnableTo(c, c.arch, 1)).toThrow(/missing 1 tensor\(s\) needed up to layer 1: model\.language_model\.layers\.1\.linear_attn\.A_log/);
    } finally {
      c.close();
    }
  });

  it('names a misshapen tensor with the shape config.json implies', () => {
    const dir = edited('misshapen', (t) => {
      const conv = t['model.language_model.layers.0.linear_attn.conv1d.weight'];
      t['model.language_model.layers.0.linear_attn.conv1d.weight'] = { ...conv, shape: [conv.shape[0], conv.shape[2], 1] };
    });
    const c = Checkpoint.open(dir);
    try {
      expect(() => assertRunnableTo(c, c.arch, 0)).toThrow(/tensor 'model\.language_model\.layers\.0\.linear_attn\.conv1d\.weight' has shape \[48,4,1\] but config\.json implies \[48,1,4\]/);
    } finally {
      c.close();
    }
  });

  it('refuses a layer past the depth before building anything', async () => {
    await expect(ForwardEngine.open({ modelDir: ck.dir, layer: 4, cacheDir: join(ck.dir, 'cache') })).rejects.toThrow(/layer 4 is out of range: the model has 4 decoder layers \(0\.\.3\)/);
  });
});
