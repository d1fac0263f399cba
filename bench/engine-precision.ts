/**
 * bench engine --precision int8 (or f16): the candidate precision against float32 on the same random checkpoint
 * and SAE, in one run:
 *   - graph build, each precision in its own child process: seconds and peak RSS (the build streams one tensor at a
 *     time; the whole model is never held in float32)
 *   - serving, each precision alone in a child process: peak RSS with the engine open and warm
 *   - the two engines in one child process, runs alternating (load from elsewhere hits both alike): tokens/s with
 *     the SAE fused, and fidelity on the same batch (residual error, fired_set_agreement, tokens certified exact)
 *   - served weights: bytes of each graph's external weights file, and their ratio
 * PyTorch is not installed here, so its quantize_dynamic figure (NOTES.md, 503 tokens/s at the Qwen3-0.6B shape,
 * 16,384 x k50 SAE, another day) is quoted as a reference, never as a same-run ratio.
 */
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ForwardEngine, type ForwardEngineOptions } from '../src/engine/forward-engine.js';
import { FiredSetAgreementSum, ResidualErrorSum } from '../src/engine/fidelity.js';
import type { PrecisionSetting } from '../src/config.js';
import { Checkpoint } from '../src/model/checkpoint.js';
import { ensureGraph } from '../src/model/graph-cache.js';
import { settleInt8WeightForm } from '../src/engine/int8-weight-form.js';
import { WEIGHTS_FILE, type WeightDtype } from '../src/model/graph.js';
import type { TopKSae } from '../src/model/sae/types.js';
import { encodeTopK } from '../src/model/sae/encode.js';
import type { TopKBatch } from '../src/engine/types.js';

export interface PrecisionJob {
  op: 'build' | 'serve' | 'compare';
  precision: WeightDtype;
  modelDir: string;
  cacheDir: string;
  layer: number;
  batch: number;
  seq: number;
  threads: number;
  iters: number;
  vocab: number;
  sae: { dModel: number; dSae: number; k: number; seed: number };
}

/** The random SAE, rebuilt from its seed in every process (engine.ts owns the recipe). */
export type SaeFactory = (spec: PrecisionJob['sae']) => TopKSae;

const PYTORCH_QUANTIZE_DYNAMIC_REFERENCE = {
  tokens_per_s: 503,
  shape: 'Qwen3-0.6B to layer 14, 8 x 128 tokens, 16,384 x k50 SAE, 2 threads',
  source: 'NOTES.md (measured another day on another machine of this kind; PyTorch is not installed here, so it is not re-measured in this run)',
};

/** Parent side: build, serve and compare children; returns the JSON result. */
export function comparePrecisions(base: Omit<PrecisionJob, 'op' | 'precision'>, candidate: WeightDtype, flopsPerToken: number, log: (m: string) => void): Record<string, unknown> {
  const child = (job: PrecisionJob) => runChild(job);
  const build: Record<string, { seconds: number; peakRssMb: number; weightsBytes: number; float32Bytes: number }> = {};
  const serve: Record<string, { peakRssMb: number; loadSeconds: number }> = {};
  for (const p of ['f32', candidate] as WeightDtype[]) {
    log(`building the ${p} graph (child process) ... `);
    build[p] = child({ ...base, op: 'build', precision: p }) as (typeof build)[string];
    log(`${build[p].seconds.toFixed(1)} s, peak RSS ${build[p].peakRssMb.toFixed(0)} MB\n`);
  }
  for (const p of ['f32', candidate] as WeightDtype[]) {
    log(`opening the ${p} engine alone (child process) ... `);
    serve[p] = child({ ...base, op: 'serve', precision: p }) as (typeof serve)[string];
    log(`peak RSS ${serve[p].peakRssMb.toFixed(0)} MB\n`);
  }
  log(`timing f32 and ${candidate} alternately, ${base.iters} runs each (child process) ...\n`);
  const c = child({ ...base, op: 'compare', precision: candidate }) as CompareResult;
  const tokens = base.batch * base.seq;
  const tps = (s: number[]) => tokens / median(s);
  const f32Tps = tps(c.seconds.f32), candTps = tps(c.seconds[candidate]);
  return {
    bench: 'engine',
    precision: candidate,
    reference_precision: 'f32',
    batch: base.batch, seq: base.seq, layer: base.layer, threads: base.threads,
    sae: { features: base.sae.dSae, k: base.sae.k },
    tokens_per_s_with_sae: round(candTps, 1),
    tokens_per_s_with_sae_f32: round(f32Tps, 1),
    speedup_vs_f32: round(candTps / f32Tps, 3),
    seconds_per_batch_all: { f32: c.seconds.f32.map((s) => round(s, 3)), [candidate]: c.seconds[candidate].map((s) => round(s, 3)) },
    forward_gflops_effective: { f32: round((flopsPerToken * f32Tps) / 1e9, 1), [candidate]: round((flopsPerToken * candTps) / 1e9, 1) },
    served_weights_bytes: { f32: build.f32.weightsBytes, [candidate]: build[candidate].weightsBytes },
    float32_weights_bytes: build.f32.float32Bytes,
    // against the same weights in float32 (model to layer L + SAE encoder); our f32 graph keeps a bf16 embedding
    // table in bf16, so it is itself below 1x
    served_weights_ratio: round(build[candidate].weightsBytes / build.f32.float32Bytes, 3),
    served_weights_ratio_vs_f32_graph: round(build[candidate].weightsBytes / build.f32.weightsBytes, 3),
    peak_rss_mb_build: { f32: round(build.f32.peakRssMb, 0), [candidate]: round(build[candidate].peakRssMb, 0) },
    peak_rss_mb_serve: { f32: round(serve.f32.peakRssMb, 0), [candidate]: round(serve[candidate].peakRssMb, 0) },
    build_s: { f32: round(build.f32.seconds, 1), [candidate]: round(build[candidate].seconds, 1) },
    fidelity: c.fidelity,
    pytorch_quantize_dynamic_reference: PYTORCH_QUANTIZE_DYNAMIC_REFERENCE,
    ratio_to_pytorch_reference_not_same_run: round(candTps / PYTORCH_QUANTIZE_DYNAMIC_REFERENCE.tokens_per_s, 3),
    note: 'random weights; shared, noisy machine: compare the ratios within this run only',
  };
}

interface CompareResult {
  seconds: Record<string, number[]>;
  fidelity: Record<string, unknown>;
}

function runChild(job: PrecisionJob): unknown {
  const main = join(fileURLToPath(new URL('.', import.meta.url)), 'main.ts');
  const r = spawnSync(process.execPath, ['--import', 'tsx', main, 'engine', '--precision-worker', JSON.stringify(job)], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`bench worker (${job.op} ${job.precision}) failed (exit ${r.status}):\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

/** Child side. */
export async function precisionWorker(job: PrecisionJob, makeSae: SaeFactory): Promise<number> {
  const sae = makeSae(job.sae);
  const opts = (p: PrecisionSetting): ForwardEngineOptions => ({ modelDir: job.modelDir, layer: job.layer, cacheDir: job.cacheDir, threads: job.threads, sae, precision: p });
  const rss = () => process.resourceUsage().maxRSS / 1024;
  let out: unknown;
  if (job.op === 'build') {
    const t0 = performance.now();
    const ckpt = Checkpoint.open(job.modelDir);
    if (job.precision === 'int8') await settleInt8WeightForm();
    const g = ensureGraph(job.cacheDir, ckpt, job.layer, sae, job.precision);
    ckpt.close();
    const seconds = (performance.now() - t0) / 1000;
    const peakRssMb = rss();
    // what the same weights take in float32: every tensor the graph reads (to layer L) and the SAE encoder
    const ck = Checkpoint.open(job.modelDir);
    const float32Bytes = 4 * ([...ck.arch.requiredTensors(job.layer).values()].reduce((a, shape) => a + shape.reduce((x, y) => x * y, 1), 0) + sae.dSae * (sae.dModel + 1));
    ck.close();
    out = { seconds, peakRssMb, weightsBytes: statSync(join(g.dir, WEIGHTS_FILE)).size, float32Bytes, built: g.built };
  } else {
    const ids = randomIds(job.batch, job.seq, job.vocab);
    if (job.op === 'serve') {
      const e = await ForwardEngine.open(opts(job.precision));
      await e.runTopK(ids);
      out = { peakRssMb: rss(), loadSeconds: e.info.loadSeconds };
      await e.close();
    } else {
      const ref = await ForwardEngine.open(opts('f32'));
      const cand = await ForwardEngine.open(opts(job.precision));
      try {
        // fidelity on the timed batch (and warm-up for both)
        const resid = new ResidualErrorSum();
        const rq = await cand.runResidual(ids);
        resid.add(rq, await ref.runResidual(ids));
        const fired = new FiredSetAgreementSum();
        const top = await cand.runTopK(ids);
        fired.add(top, await ref.runTopK(ids));
        const exact = top.exact ? top.exact.reduce((a, v) => a + v, 0) / top.exact.length : null;
        const saeStep = saeStepAgreement(sae, rq.resid, top, SAE_STEP_TOKENS);
        const seconds: Record<string, number[]> = { f32: [], [job.precision]: [] };
        for (let i = 0; i < job.iters; i++) {
          for (const [name, e] of [['f32', ref], [job.precision, cand]] as const) {
            const t = performance.now();
            await e.runTopK(ids);
            seconds[name].push((performance.now() - t) / 1000);
          }
        }
        const r = resid.result(), a = fired.result();
        out = {
          seconds,
          fidelity: {
            tokens: a.tokens,
            fired_set_agreement: round(a.fired_set_agreement, 4),
            mean_abs_code_error_where_sets_agree: a.mean_abs_value_error,
            sae_certified_exact_fraction: exact === null ? null : round(exact, 4),
            // the SAE step alone: the engine's encoder against the float32 encoder (float64-accumulated TypeScript)
            // on the engine's own residual, first tokens of the batch
            sae_step_tokens: saeStep.tokens,
            sae_step_fired_set_agreement: round(saeStep.agreement, 4),
            residual_max_abs: r.max_abs,
            residual_rel_rms: r.rel_rms,
          },
        } satisfies CompareResult;
      } finally {
        await ref.close();
        await cand.close();
      }
    }
  }
  process.stdout.write(JSON.stringify(out) + '\n');
  return 0;
}

const SAE_STEP_TOKENS = 32;

/** Fired-set agreement of `top` with the float32 encoder on `resid` [B*T, D], over its first `n` tokens. */
function saeStepAgreement(sae: TopKSae, resid: Float32Array, top: TopKBatch, n: number): { tokens: number; agreement: number } {
  const tokens = Math.min(n, top.batch * top.seqLen);
  const ref = encodeTopK(sae, resid.subarray(0, tokens * sae.dModel));
  let agree = 0;
  const firedOf = (values: Float32Array, indices: Int32Array, t: number) =>
    new Set(Array.from({ length: sae.k }, (_, j) => (values[t * sae.k + j] > 0 ? indices[t * sae.k + j] : -1)).filter((f) => f >= 0));
  for (let t = 0; t < tokens; t++) {
    const a = firedOf(top.values, top.indices, t), b = firedOf(ref.values, ref.indices, t);
    if (a.size === b.size && [...a].every((f) => b.has(f))) agree++;
  }
  return { tokens, agreement: tokens ? agree / tokens : 1 };
}

function randomIds(batch: number, seq: number, vocab: number): number[][] {
  let s = 7;
  const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) % Math.min(150000, vocab));
  return Array.from({ length: batch }, () => Array.from({ length: seq }, rnd));
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const round = (x: number, d: number) => Math.round(x * 10 ** d) / 10 ** d;
