/**
 * bench precision-goldens: a cheaper precision (int8 by default) against float32 on the reference checkpoints and
 * SAEs of ../shared/goldens, every family: dense Qwen3 tiny (layer 2, the Qwen-Scope and the SAELens SAE),
 * Qwen3-MoE (layer 2), Qwen3.5 (layer 3), Qwen3.5-MoE (layer 3). For each, right- and left-padded: residual error at
 * the SAE's layer, fired-set agreement with the float32 engine, and the share of tokens the exact-candidate
 * encoder certifies; and tokens/s of both engines (runs alternating; hidden 64, so not a MatMul speed).
 *
 *   npm run -s bench -- precision-goldens [--json] [--precision int8] [--goldens ../shared/goldens]
 *                                         [--int8-kernel dqmm-row|dqmm|nbits8] (a measurement override)
 *                                         [--noise-floor]
 *
 * --noise-floor: what residual accuracy the fired-set target asks for, independent of any kernel. The float32
 * engine's residual of every real token is perturbed by isotropic gaussian noise of relative size eps
 * (||noise|| = eps ||x||, 8 draws per eps) and encoded by the float64-accumulated TypeScript encoder; reported is the
 * share of tokens whose fired set is unchanged, per eps, beside each case's measured int8 residual error.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseChoice, parseFlags } from '../src/cli/args.js';
import { FiredSetAgreementSum, ResidualErrorSum } from '../src/engine/fidelity.js';
import { ForwardEngine } from '../src/engine/forward-engine.js';
import { INT8_GRAPH_CHOICES } from '../src/model/blocks/int8.js';
import { encodeTopK } from '../src/model/sae/encode.js';
import { loadSae } from '../src/model/sae/load.js';
import type { TopKSae } from '../src/model/sae/types.js';
import { Rng } from '../src/util/random.js';

const FLAGS = {
  json: { type: 'boolean', default: false },
  precision: { type: 'string', default: 'int8' },
  goldens: { type: 'string', default: '../shared/goldens' },
  'int8-kernel': { type: 'string' },
  'noise-floor': { type: 'boolean', default: false },
} as const;

const NOISE_EPS = [1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2];

/** Fired set {f : code_f > 0} of token t, as a sorted string key. */
function firedKey(c: { values: Float32Array; indices: Int32Array; k: number }, t: number): string {
  const out: number[] = [];
  for (let j = 0; j < c.k; j++) if (c.values[t * c.k + j] > 0) out.push(c.indices[t * c.k + j]);
  return out.sort((a, b) => a - b).join(',');
}

/** Share of the rows of x [n, D] whose fired set survives relative noise eps, per eps (8 draws each). */
function noiseFloor(sae: TopKSae, x: Float32Array, seed: number): Record<string, number> {
  const D = sae.dModel, n = x.length / D;
  const clean = encodeTopK(sae, x);
  const rng = new Rng(seed);
  const out: Record<string, number> = {};
  for (const eps of NOISE_EPS) {
    let same = 0;
    for (let draw = 0; draw < 8; draw++) {
      const y = new Float32Array(x);
      for (let t = 0; t < n; t++) {
        let xn = 0;
        for (let i = 0; i < D; i++) xn += x[t * D + i] ** 2;
        const z = rng.normalArray(D, 1);
        let zn = 0;
        for (let i = 0; i < D; i++) zn += z[i] ** 2;
        const s = (eps * Math.sqrt(xn)) / Math.sqrt(zn);
        for (let i = 0; i < D; i++) y[t * D + i] += s * z[i];
      }
      const noisy = encodeTopK(sae, y);
      for (let t = 0; t < n; t++) if (firedKey({ ...noisy, k: sae.k }, t) === firedKey({ ...clean, k: sae.k }, t)) same++;
    }
    out[String(eps)] = same / (8 * n);
  }
  return out;
}

/** Every family's reference checkpoint with its SAE(s). */
export const GOLDEN_CASES = [
  { family: 'qwen3', model: 'qwen3-tiny-bf16', sae: 'qscope-sae/layer2.sae.pt', k: 32, layer: 2, manifest: 'qscope-manifest.json' },
  { family: 'qwen3', model: 'qwen3-tiny-bf16', sae: 'sae-saelens-L2', k: undefined, layer: 2, manifest: 'manifest.json' },
  { family: 'qwen3_moe', model: 'qwen3-moe/qwen3-moe-tiny', sae: 'qwen3-moe/qscope-sae/layer2.sae.pt', k: 32, layer: 2, manifest: 'qwen3-moe/manifest.json' },
  { family: 'qwen3_5', model: 'qwen3.5/qwen3.5-tiny', sae: 'qwen3.5/qscope-sae/layer3.sae.pt', k: 32, layer: 3, manifest: 'qwen3.5/manifest.json' },
  { family: 'qwen3_5_moe', model: 'qwen3.5-moe/qwen3.5-moe-tiny', sae: 'qwen3.5-moe/qscope-sae/layer3.sae.pt', k: 32, layer: 3, manifest: 'qwen3.5-moe/manifest.json' },
] as const;

export async function run(argv: string[]): Promise<number> {
  const f = parseFlags(argv, FLAGS);
  const precision = parseChoice(f.precision as string, 'precision', ['f16', 'int8'] as const);
  if (typeof f['int8-kernel'] === 'string') INT8_GRAPH_CHOICES.kernel = parseChoice(f['int8-kernel'], 'int8-kernel', ['dqmm-row', 'dqmm', 'nbits8'] as const);
  const dir = resolve(f.goldens as string);
  const cacheDir = mkdtempSync(join(tmpdir(), 'toxscope-precision-goldens-'));
  const results: Record<string, unknown>[] = [];
  try {
    for (const c of GOLDEN_CASES) {
      const sae = loadSae(join(dir, c.sae), c.k ? { k: c.k } : {});
      const seqs = (JSON.parse(readFileSync(join(dir, c.manifest), 'utf8')) as { sequences: number[][] }).sequences;
      const open = (p: 'f32' | typeof precision) => ForwardEngine.open({ modelDir: join(dir, c.model), layer: c.layer, sae, cacheDir, threads: 1, precision: p });
      const ref = await open('f32');
      const cand = await open(precision);
      try {
        // speed on these tiny checkpoints (hidden 64: overheads, not MatMuls, dominate), runs alternating
        const secs: Record<string, number[]> = { f32: [], cand: [] };
        const realTokens = seqs.reduce((a, q) => a + q.length, 0);
        for (let i = 0; i < 5; i++)
          for (const [name, e] of [['f32', ref], ['cand', cand]] as const) {
            const t0 = performance.now();
            await e.runTopK(seqs, 'right');
            secs[name].push((performance.now() - t0) / 1000);
          }
        const tps = (xs: number[]) => realTokens / [...xs].sort((a, b) => a - b)[2];
        const speed = { tokens_per_s: tps(secs.cand), tokens_per_s_f32: tps(secs.f32), speedup_vs_f32: tps(secs.cand) / tps(secs.f32) };
        for (const padding of ['right', 'left'] as const) {
          const resid = new ResidualErrorSum();
          resid.add(await cand.runResidual(seqs, padding), await ref.runResidual(seqs, padding));
          const fired = new FiredSetAgreementSum();
          const top = await cand.runTopK(seqs, padding);
          fired.add(top, await ref.runTopK(seqs, padding));
          let real = 0, certified = 0;
          top.mask.forEach((m, t) => {
            real += m;
            if (m && top.exact?.[t]) certified++;
          });
          const a = fired.result(), r = resid.result();
          results.push({
            family: c.family, sae: c.sae, k: sae.k, d_sae: sae.dSae, layer: c.layer, padding, tokens: a.tokens,
            fired_set_agreement: a.fired_set_agreement, residual_rel_rms: r.rel_rms, residual_max_abs: r.max_abs,
            sae_certified_fraction: top.exact ? certified / real : null,
            ...speed,
          });
          if (f['noise-floor'] && padding === 'right') {
            const r32 = await ref.runResidual(seqs, padding);
            const rows: number[] = [];
            r32.mask.forEach((m, t) => m && rows.push(t));
            const x = new Float32Array(rows.length * sae.dModel);
            rows.forEach((t, j) => x.set(r32.resid.subarray(t * sae.dModel, (t + 1) * sae.dModel), j * sae.dModel));
            results[results.length - 1].noise_floor_fired_set_agreement = noiseFloor(sae, x, 12);
          }
        }
      } finally {
        await ref.close();
        await cand.close();
      }
    }
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
  const int8 = precision === 'int8' ? INT8_GRAPH_CHOICES : undefined;
  if (f.json) process.stdout.write(JSON.stringify({ bench: 'precision-goldens', precision, int8, results }) + '\n');
  else {
    if (int8) process.stdout.write(`int8 choices: ${JSON.stringify(int8)}\n`);
    for (const r of results as Record<string, number | string>[])
      process.stdout.write(
        `${r.family} ${r.sae} (k ${r.k}) ${r.padding}: fired_set_agreement ${(100 * (r.fired_set_agreement as number)).toFixed(1)}% of ${r.tokens} tokens, residual rel. RMS ${(r.residual_rel_rms as number).toExponential(2)}, certified ${r.sae_certified_fraction}, ${(r.tokens_per_s as number).toFixed(0)} vs f32 ${(r.tokens_per_s_f32 as number).toFixed(0)} tokens/s (x${(r.speedup_vs_f32 as number).toFixed(2)})` +
          (r.noise_floor_fired_set_agreement ? `\n  fired sets kept under relative residual noise eps: ${Object.entries(r.noise_floor_fired_set_agreement as unknown as Record<string, number>).map(([e, a]) => `${e}: ${(100 * a).toFixed(1)}%`).join(', ')}` : '') + '\n',
      );
  }
  return 0;
}
