/**
 * SAE loaders: format detection, what each format's files say (layer, k, biases), shape checks,
 * and refusals of what the loaders do not implement. Files are written by the tests.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isToxScopeError } from '../src/errors.js';
import { writeSafetensors } from '../src/model/safetensors.js';
import { denseCodes, encodeTopK } from '../src/model/sae/encode.js';
import { kFromReleaseName } from '../src/model/sae/qwen-scope.js';
import { loadSae, resolveSae } from '../src/model/sae/load.js';
import { TopKSae } from '../src/model/sae/types.js';
import { StorageDtype, writeTorchSave } from './helpers/torch-save.js';

const root = mkdtempSync(join(tmpdir(), 'toxscope-sae-load-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = (name: string) => {
  const d = join(root, `${n++}`, name);
  mkdirSync(d, { recursive: true });
  return d;
};

// One SAE's maths, d_model 6, d_sae 10, in float32 with values exact in bf16 (multiples of 1/8, small).
const D = 6;
const S = 10;
const seq = (len: number, mul: number, add: number) => Float32Array.from({ length: len }, (_, i) => (((i * mul + add) % 17) - 8) / 8);
const W = seq(S * D, 7, 3); //  [S, D]  feature f's encoder direction is row f
const BENC = seq(S, 5, 1); //   [S]
const BDEC = seq(D, 3, 2); //   [D]
const WDEC = seq(D * S, 11, 4); // [D, S]
const X = seq(4 * D, 13, 5); // 4 tokens [4, D]

function t(m: Float32Array, rows: number, cols: number): Float32Array {
  const o = new Float32Array(m.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) o[c * rows + r] = m[r * cols + c];
  return o;
}
const f32 = (shape: number[], data: Float32Array) => ({ dtype: 'F32' as const, shape, data });

function writeQwenScope(dir: string, layer: number, opts: { dtype?: StorageDtype; transposedEnc?: boolean; wDecShape?: number[]; drop?: string } = {}): string {
  const dtype = opts.dtype ?? 'F32';
  const storages = {
    // W_enc either as stored by a contiguous save, or as the transpose view of a [D, S] storage (stride [1, S])
    '0': { dtype, values: opts.transposedEnc ? t(W, S, D) : W },
    '1': { dtype, values: WDEC },
    '2': { dtype, values: BENC },
    '3': { dtype, values: BDEC },
  };
  const tensors: Record<string, { storage: string; shape: number[]; stride?: number[]; parameter?: boolean }> = {
    W_enc: opts.transposedEnc ? { storage: '0', shape: [S, D], stride: [1, S] } : { storage: '0', shape: [S, D], parameter: true },
    W_dec: { storage: '1', shape: opts.wDecShape ?? [D, S] },
    b_enc: { storage: '2', shape: [S] },
    b_dec: { storage: '3', shape: [D] },
  };
  if (opts.drop) delete tensors[opts.drop];
  const file = join(dir, `layer${layer}.sae.pt`);
  writeTorchSave(file, { archive: `layer${layer}.sae`, storages, tensors });
  return file;
}

function writeSaeLens(dir: string, cfg: Record<string, unknown>): string {
  writeFileSync(join(dir, 'cfg.json'), JSON.stringify({ d_in: D, d_sae: S, k: 3, hook_layer: 4, architecture: 'topk', apply_b_dec_to_input: true, ...cfg }));
  writeSafetensors(join(dir, 'sae_weights.safetensors'), {
    W_enc: f32([D, S], t(W, S, D)),
    b_enc: f32([S], BENC),
    W_dec: f32([S, D], t(WDEC, D, S)),
    b_dec: f32([D], BDEC),
  });
  return dir;
}

function writeSparsify(dir: string, cfg: Record<string, unknown> = {}): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'cfg.json'), JSON.stringify({ activation: 'topk', expansion_factor: 2, normalize_decoder: true, num_latents: S, k: 3, multi_topk: false, skip_connection: false, d_in: D, ...cfg }));
  writeSafetensors(join(dir, 'sae.safetensors'), {
    'encoder.weight': f32([S, D], W),
    'encoder.bias': f32([S], BENC),
    W_dec: f32([S, D], t(WDEC, D, S)),
    b_dec: f32([D], BDEC),
  });
  return dir;
}

function errorOf(fn: () => unknown): Error & { kind?: string } {
  try {
    fn();
  } catch (e) {
    expect(isToxScopeError(e)).toBe(true);
    return e as Error & { kind?: string };
  }
  throw new Error('expected an error, none was thrown');
}

/** The reference maths, written out: relu(top-k of (x - bias) W^T + b). */
function expectedCodes(bias: Float32Array | null, k: number): Float32Array {
  const out = new Float32Array(4 * S);
  for (let tok = 0; tok < 4; tok++) {
    const pre = Array.from({ length: S }, (_, f) => {
      let s = BENC[f];
      for (let i = 0; i < D; i++) s += (X[tok * D + i] - (bias ? bias[i] : 0)) * W[f * D + i];
      return s;
    });
    const order = pre.map((_, f) => f).sort((a, b) => pre[b] - pre[a] || a - b).slice(0, k);
    for (const f of order) out[tok * S + f] = Math.max(0, pre[f]);
  }
  return out;
}
const codesOf = (sae: TopKSae) => Array.from(denseCodes(encodeTopK(sae, X), sae.dSae));

describe('Qwen-Scope .pt loader', () => {
  it('loads a file: shapes from the tensors, layer from the name, no input bias, encoder as stored', () => {
    const file = writeQwenScope(fresh('qs'), 7);
    const sae = loadSae(file, { k: 3 });
    expect(sae).toMatchObject({ format: 'qwen-scope', source: file, dModel: D, dSae: S, k: 3, layer: 7, inputBias: null, wDec: null });
    expect(Array.from(sae.wEnc)).toEqual(Array.from(W));
    expect(Array.from(sae.bDec!)).toEqual(Array.from(BDEC));
    expect(codesOf(sae)).toEqual(Array.from(expectedCodes(null, 3)));
  });

  it('picks layer{L}.sae.pt from a directory of layers, and k from the release name', () => {
    const dir = fresh('SAE-Res-Qwen3-Tiny-W10-L0_4');
    writeQwenScope(dir, 2);
    writeQwenScope(dir, 11);
    const sae = loadSae(dir, { layer: 11 });
    expect(sae).toMatchObject({ layer: 11, k: 4, source: join(dir, 'layer11.sae.pt') });
    expect(kFromReleaseName('/x/Qwen/SAE-Res-Qwen3-8B-Base-W64K-L0_50/layer14.sae.pt')).toBe(50);
    expect(kFromReleaseName('/x/layer14.sae.pt')).toBeUndefined();
    expect(errorOf(() => loadSae(dir)).message).toMatch(/several layers \(layer2\.sae\.pt, layer11\.sae\.pt\): pick one with --layer/);
    expect(errorOf(() => loadSae(dir, { layer: 5 })).message).toMatch(/no layer5\.sae\.pt/);
  });

  it('decodes bf16 weights and gathers an encoder saved as a transposed (non-contiguous) view', () => {
    const bf = loadSae(writeQwenScope(fresh('bf16'), 1, { dtype: 'BF16' }), { k: 3 });
    expect(Array.from(bf.wEnc)).toEqual(Array.from(W)); // values are exact in bf16
    const tr = loadSae(writeQwenScope(fresh('tr'), 1, { transposedEnc: true }), { k: 3, decoder: true });
    expect(Array.from(tr.wEnc)).toEqual(Array.from(W));
    expect(Array.from(tr.wDec!)).toEqual(Array.from(WDEC));
  });

  it('refuses: no k, k out of range, a layer other than the file name, wrong or missing tensors', () => {
    const file = writeQwenScope(fresh('plain'), 3);
    const noK = errorOf(() => loadSae(file));
    expect(noK.kind).toBe('validation');
    expect(noK.message).toMatch(/k must be given/);
    expect(errorOf(() => loadSae(file, { k: S + 1 })).message).toMatch(/k = 11 must be an integer in \[1, d_sae = 10\]/);
    expect(errorOf(() => loadSae(file, { k: 3, layer: 4 })).message).toMatch(/reads layer 3, but layer 4 was requested/);
    const badDec = errorOf(() => loadSae(writeQwenScope(fresh('bad'), 3, { wDecShape: [S, D] }), { k: 3 }));
    expect(badDec.kind).toBe('format');
    expect(badDec.message).toMatch(/tensor 'W_dec' has shape \[10,6\], expected \[6,10\]/);
    expect(errorOf(() => loadSae(writeQwenScope(fresh('nob'), 3, { drop: 'b_enc' }), { k: 3 })).message).toMatch(/missing tensor 'b_enc'/);
  });
});

describe('SAELens loader', () => {
  it('loads cfg + weights: W_enc transposed to [d_sae, d_in], layer from hook_layer, b_dec as input bias', () => {
    const dir = writeSaeLens(fresh('saelens'), {});
    const sae = loadSae(dir);
    expect(sae).toMatchObject({ format: 'saelens', dModel: D, dSae: S, k: 3, layer: 4 });
    expect(Array.from(sae.wEnc)).toEqual(Array.from(W));
    expect(Array.from(sae.inputBias!)).toEqual(Array.from(BDEC));
    expect(codesOf(sae)).toEqual(Array.from(expectedCodes(BDEC, 3)));
    expect(Array.from(loadSae(dir, { decoder: true }).wDec!)).toEqual(Array.from(WDEC));
  });

  it('honours apply_b_dec_to_input = false (then it encodes exactly like the Qwen-Scope file of the same weights)', () => {
    const sae = loadSae(writeSaeLens(fresh('nobias'), { apply_b_dec_to_input: false }));
    expect(sae.inputBias).toBeNull();
    expect(codesOf(sae)).toEqual(codesOf(loadSae(writeQwenScope(fresh('qs'), 4), { k: 3 })));
  });

  it('reads the layer from hook_name (resid_post L -> L, resid_pre L -> L-1, metadata block of SAELens 6)', () => {
    expect(loadSae(writeSaeLens(fresh('a'), { hook_layer: undefined, hook_name: 'blocks.9.hook_resid_post' })).layer).toBe(9);
    expect(loadSae(writeSaeLens(fresh('b'), { hook_layer: 9, hook_name: 'blocks.9.hook_resid_pre' })).layer).toBe(8);
    expect(loadSae(writeSaeLens(fresh('c'), { hook_layer: undefined, metadata: { hook_name: 'blocks.5.hook_resid_post' } })).layer).toBe(5);
    expect(errorOf(() => loadSae(writeSaeLens(fresh('d'), { hook_name: 'blocks.5.hook_mlp_out' }))).message).toMatch(/hook 'blocks\.5\.hook_mlp_out' is not the residual stream/);
  });

  it('accepts the older TopK spelling (architecture standard + activation_fn_str topk)', () => {
    const sae = loadSae(writeSaeLens(fresh('old'), { architecture: 'standard', k: undefined, activation_fn_str: 'topk', activation_fn_kwargs: { k: 2 } }));
    expect(sae.k).toBe(2);
    expect(codesOf(sae)).toEqual(Array.from(expectedCodes(BDEC, 2)));
  });

  it('refuses what it does not implement, naming the cfg field', () => {
    for (const arch of ['standard', 'gated', 'jumprelu'])
      expect(errorOf(() => loadSae(writeSaeLens(fresh(arch), { architecture: arch }))).message).toMatch(new RegExp(`architecture '${arch}'.* not supported: only TopK`));
    expect(errorOf(() => loadSae(writeSaeLens(fresh('norm'), { normalize_activations: 'expected_average_only_in' }))).message).toMatch(
      /normalize_activations 'expected_average_only_in' is not supported/,
    );
    expect(loadSae(writeSaeLens(fresh('none'), { normalize_activations: 'none' })).k).toBe(3);
  });

  it('checks cfg d_in/d_sae against the shapes and refuses a k other than the trained one', () => {
    expect(errorOf(() => loadSae(writeSaeLens(fresh('dsae'), { d_sae: 12 }))).message).toMatch(/d_sae = 12 but W_enc is \[6,10\]/);
    expect(errorOf(() => loadSae(writeSaeLens(fresh('din'), { d_in: 8 }))).message).toMatch(/d_in = 8 but W_enc is \[6,10\]/);
    expect(errorOf(() => loadSae(writeSaeLens(fresh('k'), {}), { k: 5 })).message).toMatch(/trained with k = 3, but k = 5 was requested/);
  });
});

describe('sparsify loader', () => {
  it('loads a hookpoint directory: layer from its name, b_dec subtracted, relu then top-k', () => {
    const dir = writeSparsify(fresh('layers.6'));
    const sae = loadSae(dir);
    expect(sae).toMatchObject({ format: 'sparsify', dModel: D, dSae: S, k: 3, layer: 6 });
    expect(codesOf(sae)).toEqual(Array.from(expectedCodes(BDEC, 3)));
    // the same maths as the SAELens file with apply_b_dec_to_input
    expect(codesOf(sae)).toEqual(codesOf(loadSae(writeSaeLens(fresh('sl'), {}))));
  });

  it('finds layers.L inside a run directory when a layer is given', () => {
    const run = fresh('run');
    writeSparsify(join(run, 'layers.1'));
    writeSparsify(join(run, 'layers.3'));
    expect(resolveSae(run, 3)).toEqual({ format: 'sparsify', path: join(run, 'layers.3') });
    expect(loadSae(run, { layer: 1 }).layer).toBe(1);
    expect(errorOf(() => loadSae(run)).message).toMatch(/no SAE found.*needs --layer/);
  });

  it('refuses non-residual hookpoints, transcoders and other activations', () => {
    expect(errorOf(() => loadSae(writeSparsify(fresh('layers.2.mlp')))).message).toMatch(/hookpoint 'layers\.2\.mlp' is a submodule's output/);
    expect(errorOf(() => loadSae(writeSparsify(fresh('tc'), { transcode: true }))).message).toMatch(/transcoders/);
    expect(errorOf(() => loadSae(writeSparsify(fresh('gm'), { activation: 'groupmax' }))).message).toMatch(/activation 'groupmax' is not supported/);
    expect(errorOf(() => loadSae(writeSparsify(fresh('nl'), { num_latents: 20 }))).message).toMatch(/give 20 latents but encoder\.weight is \[10,6\]/);
  });
});

describe('format detection', () => {
  it('names what it expected when nothing matches', () => {
    expect(errorOf(() => loadSae(join(root, 'missing'))).message).toMatch(/SAE path does not exist/);
    const empty = fresh('empty');
    expect(errorOf(() => loadSae(empty)).message).toMatch(/no SAE found: expected layer\{L\}\.sae\.pt, cfg\.json \+ sae_weights\.safetensors/);
    const txt = join(empty, 'weights.bin');
    writeFileSync(txt, 'x');
    expect(errorOf(() => loadSae(txt)).message).toMatch(/not a recognised SAE file/);
  });

  it('accepts the weights file of a cfg directory as the path', () => {
    const dir = writeSaeLens(fresh('via-file'), {});
    expect(resolveSae(join(dir, 'sae_weights.safetensors'))).toEqual({ format: 'saelens', path: dir });
  });
});

describe('encodeTopK', () => {
  it('keeps the k largest pre-activations, descending, ties to the lower id, relu on kept values', () => {
    // d_model 1, x = 1: pre = w + b per feature
    const sae: TopKSae = {
      format: 'qwen-scope', source: 'hand', dModel: 1, dSae: 5, k: 4, layer: 0,
      wEnc: Float32Array.from([1, 3, 3, -2, 0]), bEnc: Float32Array.from([0, 0, 0, 0, -1]), inputBias: null, wDec: null, bDec: null,
    };
    const c = encodeTopK(sae, Float32Array.from([1, -1]));
    // token 0: pre = [1, 3, 3, -2, -1] -> ids 1, 2 (tie: lower first), 0, 4; the kept -1 becomes 0
    expect(Array.from(c.indices.subarray(0, 4))).toEqual([1, 2, 0, 4]);
    expect(Array.from(c.values.subarray(0, 4))).toEqual([3, 3, 1, 0]);
    // token 1: pre = [-1, -3, -3, 2, -1] -> 3, then 0 and 4 (tie at -1), then 1
    expect(Array.from(c.indices.subarray(4, 8))).toEqual([3, 0, 4, 1]);
    expect(Array.from(c.values.subarray(4, 8))).toEqual([2, 0, 0, 0]);
    expect(encodeTopK(sae, new Float32Array(0))).toMatchObject({ n: 0, k: 4 });
  });
});
