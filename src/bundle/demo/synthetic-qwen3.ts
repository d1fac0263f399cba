/**
 * A synthetic Qwen3-architecture checkpoint in the exact Hugging Face format (config.json + bf16
 * model.safetensors, HF tensor names), with seeded random weights initialised like Hugging Face does
 * (normal, std = initializer_range; RMSNorm weights 1). It has no language ability: it carries token
 * identity through the layers, which is all the demo needs to exercise the pipeline end to end.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { f32ToBf16 } from '../../model/dtypes.js';
import { Qwen3Config, toHfConfigJson } from '../../model/families/qwen3.js';
import { TensorToWrite, writeSafetensors } from '../../model/safetensors.js';
import { Rng } from '../../util/random.js';

export interface SyntheticQwen3Options {
  config: Qwen3Config;
  seed: number;
  initStd?: number;
  /** std of the token embeddings (default initStd); larger keeps token identity dominant in the residual stream */
  embedStd?: number;
}

export function writeSyntheticQwen3(dir: string, opts: SyntheticQwen3Options): void {
  const c = opts.config;
  const std = opts.initStd ?? 0.02;
  const rng = new Rng(opts.seed);
  const D = c.hiddenSize, H = c.numHeads, KV = c.numKvHeads, hd = c.headDim, F = c.intermediateSize;
  const tensors: Record<string, TensorToWrite> = {};
  const randn = (shape: number[], s = std): TensorToWrite => ({
    dtype: 'BF16',
    shape,
    data: f32ToBf16(rng.normalArray(shape.reduce((a, b) => a * b, 1), s)),
  });
  const ones = (n: number): TensorToWrite => ({ dtype: 'BF16', shape: [n], data: f32ToBf16(new Float32Array(n).fill(1)) });

  tensors['model.embed_tokens.weight'] = randn([c.vocabSize, D], opts.embedStd ?? std);
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    tensors[p + 'input_layernorm.weight'] = ones(D);
    tensors[p + 'self_attn.q_proj.weight'] = randn([H * hd, D]);
    tensors[p + 'self_attn.k_proj.weight'] = randn([KV * hd, D]);
    tensors[p + 'self_attn.v_proj.weight'] = randn([KV * hd, D]);
    tensors[p + 'self_attn.o_proj.weight'] = randn([D, H * hd]);
    tensors[p + 'self_attn.q_norm.weight'] = ones(hd);
    tensors[p + 'self_attn.k_norm.weight'] = ones(hd);
    tensors[p + 'post_attention_layernorm.weight'] = ones(D);
    tensors[p + 'mlp.gate_proj.weight'] = randn([F, D]);
    tensors[p + 'mlp.up_proj.weight'] = randn([F, D]);
    tensors[p + 'mlp.down_proj.weight'] = randn([D, F]);
  }
  tensors['model.norm.weight'] = ones(D);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...toHfConfigJson(c), initializer_range: std }, null, 2));
  writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt', toxscope: 'synthetic demo backbone' });
}
