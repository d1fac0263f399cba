/**
 * bench engine: tokens/s of the forward pass to layer L of a Qwen3-0.6B-shaped model (random bf16 weights
 * generated into a temporary directory, only layers 0..L written, deleted afterwards), next to this
 * machine's measured fp32 MatMul throughput (one ORT MatMul [M,K]x[K,N]), and the ratio of the forward
 * pass's effective FLOP/s to it.
 *
 *   npm run -s bench -- engine [--json] [--family qwen3|qwen3-moe|qwen3.5|qwen3.5-moe] [--batch 8] [--seq 128] [--layer 14] [--threads 2]
 *       [--iters 5] [--hidden 1024] [--intermediate 3072] [--heads 16] [--kv-heads 8] [--head-dim 128] [--vocab 151936]
 *       [--no-prepack] [--keep <dir>] [--sae-features 16384] [--sae-k 50] [--no-sae] [--precision f32|f16|int8]
 *       MoE families: [--experts E] [--top-k k] [--moe-intermediate I] [--moe ort-moe|gathered|both] (defaults: the real shape)
 *
 * --family qwen3-moe: a Qwen3-30B-A3B-shaped model (hidden 2048, 32/4 heads of 128, 128 experts, top-8, expert
 * width 768; --layer defaults to 1) timed in the same child process as a dense Qwen3 graph of the same hidden size
 * and depth (Qwen3-1.7B's shapes: intermediate 6144, 16/8 heads of 128), runs alternating, so the ratio of their
 * effective FLOP/s (MoE counting only the k experts each token routes to, plus the router) holds on a shared
 * machine. With --moe both, the gathered ai.onnx decomposition is timed too (in its own phase, against the dense
 * graph again, so that only one MoE graph's weights are resident at a time).
 * --family qwen3.5: the Qwen3.5-2B text shape (bench/qwen35-shape.ts) against the dense Qwen3 graph of the same
 * hidden and MLP width (Qwen3-1.7B's) to the same layer, same child process, runs alternating; the headline is
 * qwen35_to_dense_flops_ratio (every token does all the work: no routing).
 * --family qwen3.5-moe: the Qwen3.5-35B-A3B text shape (hidden 2048, DeltaNet 16/32 heads of 128, attention 16/2
 * heads of 256 every 4th layer, 256 experts top-8 of width 512 plus a shared expert of 512; --layer defaults to 1)
 * the same way as qwen3-moe: against the dense Qwen3 graph, effective FLOP/s counting only routed work (plus the
 * shared expert, which every token runs).
 *
 * The timed part runs in a child process so its peak RSS is the engine's own (graph load + runs), not the
 * weight generation's. The same batches also run through the graph with a fused random TopK SAE
 * (--sae-features 16384 --sae-k 50 by default; --no-sae skips it), giving the encoder's share of the time.
 * --precision int8 (or f16) instead compares that precision with float32 in one run (bench/engine-precision.ts):
 * tokens/s with the SAE fused, peak memory of build and serve, served weight bytes, and fidelity.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseChoice, parseFlags, parseIntFlag } from '../src/cli/args.js';
import { type PrecisionJob, comparePrecisions, precisionWorker } from './engine-precision.js';
import { ForwardEngine, ForwardEngineOptions } from '../src/engine/forward-engine.js';
import type { MoeKernel } from '../src/model/blocks/moe.js';
import { Checkpoint } from '../src/model/checkpoint.js';
import { readModelConfig } from '../src/model/families/registry.js';
import type { Qwen3Config } from '../src/model/families/qwen3.js';
import type { GraphOptions } from '../src/model/graph.js';
import { ensureGraph } from '../src/model/graph-cache.js';
import { ExternalDataFile, GraphBuilder, TensorDataType } from '../src/model/onnx/graph-builder.js';
import { type BenchModel, denseQwen3, qwen35Moe, qwen35_35bA3bConfig, qwen3Moe, qwen3_30bA3bConfig, sameCheckpoint, writeRandomCheckpoint } from './engine-families.js';
import type { Qwen3MoeConfig } from '../src/model/families/qwen3-moe.js';
import type { Qwen35MoeConfig } from '../src/model/families/qwen3_5_moe.js';
import { qwen35FlopsPerToken, qwen35_2B, sameQwen35Checkpoint, writeRandomQwen35Checkpoint } from './qwen35-shape.js';
import type { TopKSae } from '../src/model/sae/types.js';
import { OrtSession } from '../src/runtime/session.js';
import { Rng } from '../src/util/random.js';

const FLAGS = {
  json: { type: 'boolean', default: false },
  family: { type: 'string', default: 'qwen3' },
  experts: { type: 'string' },
  'top-k': { type: 'string' },
  'moe-intermediate': { type: 'string' },
  moe: { type: 'string', default: 'ort-moe' },
  batch: { type: 'string', default: '8' },
  seq: { type: 'string', default: '128' },
  layer: { type: 'string' },
  threads: { type: 'string', default: '2' },
  iters: { type: 'string', default: '5' },
  hidden: { type: 'string', default: '1024' },
  intermediate: { type: 'string', default: '3072' },
  heads: { type: 'string', default: '16' },
  'kv-heads': { type: 'string', default: '8' },
  'head-dim': { type: 'string', default: '128' },
  vocab: { type: 'string' }, // default: the family's real vocabulary (151,936 for Qwen3, 248,320 for Qwen3.5)
  'no-prepack': { type: 'boolean', default: false },
  'sae-features': { type: 'string', default: '16384' },
  'sae-k': { type: 'string', default: '50' },
  'no-sae': { type: 'boolean', default: false },
  keep: { type: 'string' },
  precision: { type: 'string', default: 'f32' },
  worker: { type: 'string' }, // internal: run the timed part in this process from a JSON job
  'precision-worker': { type: 'string' }, // internal: a build / serve / compare job of engine-precision.ts
} as const;

interface Job {
  modelDir: string;
  cacheDir: string;
  layer: number;
  batch: number;
  seq: number;
  threads: number;
  iters: number;
  prepacking: boolean;
  matmul: { m: number; k: number; n: number };
  /** also time the forward pass with a fused random TopK SAE (rebuilt from its seed in the child) */
  sae?: SaeSpec;
  /**
   * Instead of the plain/SAE pair: phases of engines timed together (runs alternate within a phase); each phase's
   * engines are closed before the next opens. Results come back by label.
   */
  phases?: { label: string; modelDir: string; graphOptions?: GraphOptions }[][];
}

interface SaeSpec {
  dModel: number;
  dSae: number;
  k: number;
  seed: number;
}

interface WorkerResult {
  matmul: { seconds: number[]; gflops: number; gflopsBest: number };
  /** peakRssMb: process peak once this engine was open and warm (the plain engine is opened first) */
  forward: { loadSeconds: number; seconds: number[]; provider: string; peakRssMb: number };
  /** the same batches through the graph with the SAE encoder fused (top-k out) */
  forwardSae?: { loadSeconds: number; seconds: number[]; provider: string; peakRssMb: number };
  peakRssMb: number;
  /** phases: label -> timings */
  labelled?: Record<string, { loadSeconds: number; seconds: number[]; provider: string; peakRssMb: number }>;
}

export async function run(argv: string[]): Promise<number> {
  const f = parseFlags(argv, FLAGS);
  if (typeof f.worker === 'string') return worker(JSON.parse(f.worker) as Job);
  if (typeof f['precision-worker'] === 'string') return precisionWorker(JSON.parse(f['precision-worker']) as PrecisionJob, randomSae);
  const precision = parseChoice(f.precision as string, 'precision', ['f32', 'f16', 'int8'] as const);
  const family = f.family as string;
  if (family === 'qwen3-moe') return runMoe(f, 'qwen3-moe');
  if (family === 'qwen3.5') return runQwen35(f);
  if (family === 'qwen3.5-moe') return runMoe(f, 'qwen3.5-moe');
  if (family !== 'qwen3') {
    process.stderr.write(`bench engine: --family must be one of qwen3, qwen3-moe, qwen3.5, qwen3.5-moe; got '${family}'\n`);
    return 2;
  }
  const int = (k: keyof typeof FLAGS, min = 1) => parseIntFlag(f[k] as string, k, min);
  const layer = parseIntFlag((f.layer as string | undefined) ?? '14', 'layer', 0);
  const config: Qwen3Config = {
    hiddenSize: int('hidden'),
    intermediateSize: int('intermediate'),
    numLayers: Math.max(28, layer + 1),
    numHeads: int('heads'),
    numKvHeads: int('kv-heads'),
    headDim: int('head-dim'),
    rmsNormEps: 1e-6,
    ropeTheta: 1e6,
    vocabSize: parseIntFlag((f.vocab as string | undefined) ?? '151936', 'vocab', 1),
    tieWordEmbeddings: true,
    torchDtype: 'bfloat16',
  };
  const job0 = { layer, batch: int('batch'), seq: int('seq'), threads: int('threads'), iters: int('iters'), prepacking: !f['no-prepack'] };
  const work = typeof f.keep === 'string' ? f.keep : mkdtempSync(join(tmpdir(), 'toxscope-bench-engine-'));
  mkdirSync(work, { recursive: true });
  const log = (m: string) => !f.json && process.stdout.write(m);
  try {
    const modelDir = join(work, 'model');
    const cacheDir = join(work, 'graph-cache');
    let t0 = performance.now();
    const model = denseQwen3(config);
    if (sameCheckpoint(modelDir, model, layer)) log(`reusing the random weights in ${modelDir} ... `);
    else {
      log(`writing random bf16 weights (layers 0..${layer}) to ${modelDir} ... `);
      writeRandomCheckpoint(modelDir, model, layer, 1234);
    }
    const genSeconds = (performance.now() - t0) / 1000;
    if (precision !== 'f32') {
      log(`${genSeconds.toFixed(1)} s\n`);
      const sae = { dModel: config.hiddenSize, dSae: int('sae-features'), k: int('sae-k'), seed: 99 };
      const result = comparePrecisions({ ...job0, modelDir, cacheDir, sae, vocab: config.vocabSize }, precision, model.flopsPerToken(layer, job0.seq), log);
      const shape = { hidden: config.hiddenSize, intermediate: config.intermediateSize, heads: config.numHeads, kv_heads: config.numKvHeads, head_dim: config.headDim, vocab: config.vocabSize };
      const full = { ...result, shape, weights_gen_s: round(genSeconds, 1) };
      if (f.json) process.stdout.write(JSON.stringify(full) + '\n');
      else process.stdout.write(JSON.stringify(full, null, 2) + '\n');
      return 0;
    }
    log(`${genSeconds.toFixed(1)} s\nbuilding the graph ... `);
    t0 = performance.now();
    const saeSpec: SaeSpec | undefined = f['no-sae'] ? undefined : { dModel: config.hiddenSize, dSae: int('sae-features'), k: int('sae-k'), seed: 99 };
    const ckpt = Checkpoint.open(modelDir);
    ensureGraph(cacheDir, ckpt, layer);
    if (saeSpec) ensureGraph(cacheDir, ckpt, layer, randomSae(saeSpec));
    ckpt.close();
    const buildSeconds = (performance.now() - t0) / 1000;
    log(`${buildSeconds.toFixed(1)} s\nmeasuring (child process) ...\n`);

    const job: Job = { ...job0, modelDir, cacheDir, matmul: { m: 1024, k: config.hiddenSize, n: config.intermediateSize }, sae: saeSpec };
    const r = runWorker(job);
    const tokens = job.batch * job.seq;
    const sec = median(r.forward.seconds);
    const best = Math.min(...r.forward.seconds);
    const flopsPerToken = model.flopsPerToken(layer, job.seq);
    const tokensPerS = tokens / sec;
    const forwardGflops = (flopsPerToken * tokensPerS) / 1e9;
    const result = {
      bench: 'engine',
      family: 'qwen3',
      tokens_per_s: round(tokensPerS, 1),
      seconds_per_batch: round(sec, 3),
      seconds_per_batch_all: r.forward.seconds.map((s) => round(s, 3)),
      batch: job.batch,
      seq: job.seq,
      layer,
      threads: job.threads,
      prepacking: job.prepacking,
      provider: r.forward.provider,
      shape: { hidden: config.hiddenSize, intermediate: config.intermediateSize, heads: config.numHeads, kv_heads: config.numKvHeads, head_dim: config.headDim, vocab: config.vocabSize },
      // the plain engine alone (opened first); the process peak also holds the SAE engine opened after it
      peak_rss_mb: round(r.forward.peakRssMb, 0),
      peak_rss_mb_both_engines: round(r.peakRssMb, 0),
      matmul_gflops: round(r.matmul.gflops, 1),
      matmul_shape: [job.matmul.m, job.matmul.k, job.matmul.n],
      forward_gflops: round(forwardGflops, 1),
      forward_to_matmul_ratio: round(forwardGflops / r.matmul.gflops, 3),
      // best-of-runs for both: less sensitive to load from other processes on a shared machine
      tokens_per_s_best: round(tokens / best, 1),
      matmul_gflops_best: round(r.matmul.gflopsBest, 1),
      forward_to_matmul_ratio_best: round((flopsPerToken * tokens) / best / 1e9 / r.matmul.gflopsBest, 3),
      flops_per_token: flopsPerToken,
      ...(r.forwardSae && saeSpec
        ? {
            sae: { features: saeSpec.dSae, k: saeSpec.k },
            tokens_per_s_with_sae: round(tokens / median(r.forwardSae.seconds), 1),
            seconds_per_batch_with_sae: round(median(r.forwardSae.seconds), 3),
            // share of the fused graph's time spent in the encoder (Gemm + TopK + Relu), from the two medians
            // of runs that alternated with the plain graph's
            sae_share: round(1 - sec / median(r.forwardSae.seconds), 3),
          }
        : {}),
      load_s: round(r.forward.loadSeconds, 2),
      build_s: round(buildSeconds, 1),
      weights_gen_s: round(genSeconds, 1),
    };
    if (f.json) process.stdout.write(JSON.stringify(result) + '\n');
    else
      process.stdout.write(
        [
          `forward to layer ${layer}, batch ${job.batch} x ${job.seq} = ${tokens} tokens, ${job.threads} threads, ${result.provider}, prepacking ${job.prepacking ? 'on' : 'off'}`,
          `  ${result.tokens_per_s} tokens/s (median ${result.seconds_per_batch} s per batch of ${result.seconds_per_batch_all.length})`,
          `  effective ${result.forward_gflops} GFLOP/s (${(flopsPerToken / 1e6).toFixed(0)} MFLOP/token)`,
          `  fp32 MatMul ${job.matmul.m}x${job.matmul.k}x${job.matmul.n}: ${result.matmul_gflops} GFLOP/s -> ratio ${(100 * result.forward_to_matmul_ratio).toFixed(1)}%`,
          `  best runs: ${result.tokens_per_s_best} tokens/s, MatMul ${result.matmul_gflops_best} GFLOP/s -> ratio ${(100 * result.forward_to_matmul_ratio_best).toFixed(1)}%`,
          ...(result.sae
            ? [`  with a fused ${result.sae.features}-feature k=${result.sae.k} TopK SAE: ${result.tokens_per_s_with_sae} tokens/s; the encoder takes ${(100 * result.sae_share!).toFixed(1)}% of the time`]
            : []),
          `  peak RSS ${result.peak_rss_mb} MB (graph load ${result.load_s} s; graph build ${result.build_s} s, once, cached)`,
          '',
        ].join('\n'),
      );
    return 0;
  } finally {
    if (typeof f.keep !== 'string') rmSync(work, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- --family qwen3-moe

/**
 * A Qwen3-30B-A3B-shaped MoE to layer L against a dense Qwen3 graph of the same hidden size and depth, in one child
 * process. Effective FLOP/s count only routed work; the headline is their ratio (target: MoE >= 50% of dense).
 */
async function runMoe(f: Record<keyof typeof FLAGS, string | string[] | boolean | undefined>, family: 'qwen3-moe' | 'qwen3.5-moe'): Promise<number> {
  const int = (k: keyof typeof FLAGS, min = 1) => parseIntFlag(f[k] as string, k, min);
  const layer = parseIntFlag((f.layer as string | undefined) ?? '1', 'layer', 0);
  const kernels: MoeKernel[] = f.moe === 'both' ? ['ort-moe', 'gathered'] : f.moe === 'gathered' ? ['gathered'] : f.moe === 'ort-moe' ? ['ort-moe'] : [];
  if (!kernels.length) {
    process.stderr.write(`bench engine: --moe must be one of ort-moe, gathered, both; got '${f.moe}'\n`);
    return 2;
  }
  const opt = (k: 'experts' | 'top-k' | 'moe-intermediate' | 'vocab') => (f[k] === undefined ? undefined : int(k));
  const pick = <T extends { numExperts: number; topK: number; expertWidth: number; vocabSize: number }>(c: T): T => ({
    ...c, numExperts: opt('experts') ?? c.numExperts, topK: opt('top-k') ?? c.topK, expertWidth: opt('moe-intermediate') ?? c.expertWidth, vocabSize: opt('vocab') ?? c.vocabSize,
  });
  const moeConfig = family === 'qwen3-moe' ? pick(qwen3_30bA3bConfig(Math.max(48, layer + 1))) : pick(qwen35_35bA3bConfig(layer));
  const title = family === 'qwen3-moe' ? 'Qwen3-30B-A3B' : 'Qwen3.5-35B-A3B';
  const dense: Qwen3Config = {
    hiddenSize: moeConfig.hiddenSize, intermediateSize: 6144, numLayers: moeConfig.numLayers, numHeads: 16, numKvHeads: 8, headDim: 128,
    rmsNormEps: 1e-6, ropeTheta: 1e6, vocabSize: moeConfig.vocabSize, tieWordEmbeddings: true, torchDtype: 'bfloat16',
  };
  const models: Record<string, BenchModel> = { moe: family === 'qwen3-moe' ? qwen3Moe(moeConfig as Qwen3MoeConfig) : qwen35Moe(moeConfig as Qwen35MoeConfig), dense: denseQwen3(dense) };
  const job0 = { layer, batch: int('batch'), seq: int('seq'), threads: int('threads'), iters: int('iters'), prepacking: !f['no-prepack'] };
  const work = typeof f.keep === 'string' ? f.keep : mkdtempSync(join(tmpdir(), 'toxscope-bench-moe-'));
  mkdirSync(work, { recursive: true });
  const log = (m: string) => !f.json && process.stdout.write(m);
  try {
    const cacheDir = join(work, 'graph-cache');
    let t0 = performance.now();
    for (const [name, m] of Object.entries(models)) {
      const dir = join(work, name);
      if (sameCheckpoint(dir, m, layer)) log(`reusing the random ${name} weights in ${dir}\n`);
      else {
        log(`writing random bf16 ${name} weights (layers 0..${layer}) to ${dir} ... `);
        writeRandomCheckpoint(dir, m, layer, name === 'moe' ? 4321 : 1234);
        log('done\n');
      }
    }
    const genSeconds = (performance.now() - t0) / 1000;
    t0 = performance.now();
    const graphs: { label: string; modelDir: string; graphOptions?: GraphOptions }[] = [{ label: 'dense', modelDir: join(work, 'dense') }];
    for (const k of kernels) graphs.push({ label: k, modelDir: join(work, 'moe'), graphOptions: { moeKernel: k } });
    for (const gr of graphs) {
      log(`building the ${gr.label} graph ... `);
      const ckpt = Checkpoint.open(gr.modelDir);
      ensureGraph(cacheDir, ckpt, layer, null, 'f32', gr.graphOptions ?? {});
      ckpt.close();
      log('done\n');
    }
    const buildSeconds = (performance.now() - t0) / 1000;
    log(`measuring (child process; phases: ${kernels.map((k) => `dense + ${k}`).join(', ')}) ...\n`);
    const job: Job = {
      ...job0, modelDir: join(work, 'dense'), cacheDir, matmul: { m: 1024, k: moeConfig.hiddenSize, n: 6144 },
      // each MoE kernel is timed against its own run of the dense graph (same phase, runs alternating)
      phases: kernels.map((k) => [{ ...graphs[0], label: `dense:${k}` }, graphs.find((g) => g.label === k)!]),
    };
    const r = runWorker(job);
    const tokens = job.batch * job.seq;
    const per = (label: string, model: BenchModel) => {
      const t = r.labelled![label];
      const sec = median(t.seconds);
      const flops = model.flopsPerToken(layer, job.seq);
      return { tokens_per_s: round(tokens / sec, 1), seconds_per_batch: round(sec, 3), seconds_all: t.seconds.map((x) => round(x, 3)), effective_gflops: round((flops * tokens) / sec / 1e9, 1), flops_per_token: flops, peak_rss_mb_with_dense: round(t.peakRssMb, 0), load_s: round(t.loadSeconds, 2) };
    };
    const denseByKernel = Object.fromEntries(kernels.map((k) => [k, per(`dense:${k}`, models.dense)]));
    const moeRes = Object.fromEntries(kernels.map((k) => [k, { ...per(k, models.moe), to_dense_flops_ratio: round(per(k, models.moe).effective_gflops / denseByKernel[k].effective_gflops, 3) }]));
    const main = moeRes[kernels[0]];
    const denseRes = denseByKernel[kernels[0]];
    const result = {
      bench: 'engine',
      family,
      kernel: kernels[0],
      tokens_per_s: main.tokens_per_s,
      forward_gflops: main.effective_gflops,
      dense_tokens_per_s: denseRes.tokens_per_s,
      dense_forward_gflops: denseRes.effective_gflops,
      moe_to_dense_flops_ratio: main.to_dense_flops_ratio,
      batch: job.batch, seq: job.seq, layer, threads: job.threads, provider: r.labelled![kernels[0]].provider,
      shape: models.moe.describe,
      dense_shape: models.dense.describe,
      moe: moeRes,
      dense: denseByKernel,
      ...(moeRes.gathered && moeRes['ort-moe'] ? { ort_moe_over_gathered: round(moeRes['ort-moe'].tokens_per_s / moeRes.gathered.tokens_per_s, 3) } : {}),
      peak_rss_mb: round(r.peakRssMb, 0),
      matmul_gflops: round(r.matmul.gflops, 1),
      build_s: round(buildSeconds, 1),
      weights_gen_s: round(genSeconds, 1),
    };
    if (f.json) process.stdout.write(JSON.stringify(result) + '\n');
    else
      process.stdout.write(
        [
          `${title}-shaped MoE (${moeConfig.numExperts} experts, top-${moeConfig.topK}, width ${moeConfig.expertWidth}) to layer ${layer}, batch ${job.batch} x ${job.seq}, ${job.threads} threads, ${result.provider}`,
          ...kernels.map((k) => `  ${k}: ${moeRes[k].tokens_per_s} tokens/s, effective ${moeRes[k].effective_gflops} GFLOP/s (routed work only: ${(moeRes[k].flops_per_token / 1e6).toFixed(0)} MFLOP/token); dense Qwen3 (hidden ${dense.hiddenSize}, intermediate ${dense.intermediateSize}, same depth) in the same phase: ${denseByKernel[k].tokens_per_s} tokens/s, effective ${denseByKernel[k].effective_gflops} GFLOP/s -> MoE / dense ${(100 * moeRes[k].to_dense_flops_ratio).toFixed(1)}% (target >= 50%)`),
          ...(result.ort_moe_over_gathered ? [`  com.microsoft MoE / gathered decomposition: ${result.ort_moe_over_gathered}x tokens/s`] : []),
          `  peak RSS ${result.peak_rss_mb} MB (child process, all phases); fp32 MatMul probe ${result.matmul_gflops} GFLOP/s`,
          '',
        ].join('\n'),
      );
    return 0;
  } finally {
    if (typeof f.keep !== 'string') rmSync(work, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- timed part (child process)

function runWorker(job: Job): WorkerResult {
  const main = join(fileURLToPath(new URL('.', import.meta.url)), 'main.ts');
  const r = spawnSync(process.execPath, ['--import', 'tsx', main, 'engine', '--worker', JSON.stringify(job)], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`bench worker failed (exit ${r.status}):\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as WorkerResult;
}

async function worker(job: Job): Promise<number> {
  // MatMul samples before and after the forward runs, pooled: a burst of load from elsewhere hits both.
  const before = await measureMatMul(job);
  if (job.phases) {
    const labelled: NonNullable<WorkerResult['labelled']> = {};
    for (const phase of job.phases) {
      const opts = phase.map((e) => ({ modelDir: e.modelDir, layer: job.layer, cacheDir: job.cacheDir, threads: job.threads, prepacking: job.prepacking, graphOptions: e.graphOptions }));
      const res = await measureForward(opts, job);
      phase.forEach((e, i) => (labelled[e.label] = res[i]));
    }
    const after = await measureMatMul(job);
    const seconds = [...before, ...after];
    const { m, k, n } = job.matmul;
    const matmul = { seconds, gflops: (2 * m * k * n) / median(seconds) / 1e9, gflopsBest: (2 * m * k * n) / Math.min(...seconds) / 1e9 };
    const first = Object.values(labelled)[0];
    process.stdout.write(JSON.stringify({ matmul, forward: first, labelled, peakRssMb: process.resourceUsage().maxRSS / 1024 } satisfies WorkerResult) + '\n');
    return 0;
  }
  const base = { modelDir: job.modelDir, layer: job.layer, cacheDir: job.cacheDir, threads: job.threads, prepacking: job.prepacking };
  const [forward, forwardSae] = await measureForward(job.sae ? [base, { ...base, sae: randomSae(job.sae) }] : [base], job);
  const after = await measureMatMul(job);
  const seconds = [...before, ...after];
  const { m, k, n } = job.matmul;
  const matmul = { seconds, gflops: (2 * m * k * n) / median(seconds) / 1e9, gflopsBest: (2 * m * k * n) / Math.min(...seconds) / 1e9 };
  const result: WorkerResult = { matmul, forward, forwardSae, peakRssMb: process.resourceUsage().maxRSS / 1024 };
  process.stdout.write(JSON.stringify(result) + '\n');
  return 0;
}

/**
 * Open the engine(s) (graphs already cached) and time `iters` runs of a random batch after one warm-up each.
 * With several option sets (plain, and with the SAE fused) the runs alternate, so load from elsewhere on a
 * shared machine hits both alike and their ratio stays meaningful.
 */
export async function measureForward(optsList: ForwardEngineOptions[], job: Pick<Job, 'batch' | 'seq' | 'iters'>): Promise<WorkerResult['forward'][]> {
  const engines: ForwardEngine[] = [];
  try {
    let s = 7;
    const vocab = Math.min(150000, ...optsList.map((o) => readModelConfig(o.modelDir).config.vocabSize));
    const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) % vocab);
    const ids = Array.from({ length: job.batch }, () => Array.from({ length: job.seq }, rnd));
    // with an SAE fused, time what the service runs: top-k codes out, no dense residual
    const steps: (() => Promise<unknown>)[] = [];
    const peakRssMb: number[] = [];
    for (const opts of optsList) {
      const e = await ForwardEngine.open(opts);
      engines.push(e);
      const step = () => (opts.sae ? e.runTopK(ids) : e.runResidual(ids));
      await step(); // warm-up
      steps.push(step);
      peakRssMb.push(process.resourceUsage().maxRSS / 1024); // peak so far: this engine and the ones before it
    }
    const seconds: number[][] = steps.map(() => []);
    for (let i = 0; i < job.iters; i++) {
      for (let j = 0; j < steps.length; j++) {
        const t = performance.now();
        await steps[j]();
        seconds[j].push((performance.now() - t) / 1000);
      }
    }
    return engines.map((e, j) => ({ loadSeconds: e.info.loadSeconds, seconds: seconds[j], provider: e.info.provider, peakRssMb: peakRssMb[j] }));
  } finally {
    for (const e of engines) await e.close();
  }
}

/** Seconds per run of one ORT MatMul [m,k] x [k,n] with a constant weight (prepacked like the engine's), about 1 s of runs. */
async function measureMatMul(job: Job): Promise<number[]> {
  const { m, k, n } = job.matmul;
  const dir = join(job.cacheDir, 'matmul');
  mkdirSync(dir, { recursive: true });
  const ext = new ExternalDataFile(join(dir, 'w.bin'));
  const g = new GraphBuilder(ext);
  const x = g.input('x', TensorDataType.FLOAT, [m, k]);
  const w = Float32Array.from({ length: k * n }, (_, i) => ((i * 2654435761) % 1000) / 1000 - 0.5);
  g.node('MatMul', [x, g.weight('w', TensorDataType.FLOAT, [k, n], w)], { outputs: ['y'] });
  g.output('y', TensorDataType.FLOAT, [m, n]);
  writeFileSync(join(dir, 'matmul.onnx'), g.encode([{ domain: '', version: 23 }]));
  ext.close();
  const s = await OrtSession.create(join(dir, 'matmul.onnx'), { threads: job.threads, prepacking: job.prepacking });
  const feeds = { x: { type: 'float32' as const, data: Float32Array.from({ length: m * k }, (_, i) => (i % 97) / 97 - 0.5), dims: [m, k] } };
  for (let i = 0; i < 3; i++) await s.run(feeds);
  const seconds: number[] = [];
  const start = performance.now();
  while (seconds.length < 10 || performance.now() - start < 1000) {
    const t = performance.now();
    await s.run(feeds);
    seconds.push((performance.now() - t) / 1000);
  }
  await s.close();
  return seconds;
}

/** A seeded random TopK SAE (unit encoder rows, small negative bias), the same in parent and child. */
function randomSae(spec: SaeSpec): TopKSae {
  const rng = new Rng(spec.seed);
  const wEnc = rng.normalArray(spec.dSae * spec.dModel, 1 / Math.sqrt(spec.dModel)); // [dSae, dModel]
  return {
    format: 'qwen-scope', source: `random-sae-${spec.seed}`, dModel: spec.dModel, dSae: spec.dSae, k: spec.k,
    wEnc, bEnc: new Float32Array(spec.dSae).fill(-0.01), inputBias: null, wDec: null, bDec: null,
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const round = (x: number, d: number) => Math.round(x * 10 ** d) / 10 ** d;

// ---------------------------------------------------------------- --family qwen3.5

/**
 * The Qwen3.5-2B text shape (bench/qwen35-shape.ts: DeltaNet 16/16 heads of 128, gated attention 8/2 heads of 256
 * every 4th layer, MLP 6144, vocabulary 248,320) to layer L against the dense Qwen3 graph of the same hidden and MLP
 * width (Qwen3-1.7B: 16/8 heads of 128) to the same layer, in one child process with runs alternating. Every token
 * does all of the work (no routing); the headline is the ratio of effective FLOP/s (target >= 80%).
 */
async function runQwen35(f: Record<keyof typeof FLAGS, string | string[] | boolean | undefined>): Promise<number> {
  const int = (k: keyof typeof FLAGS, min = 1) => parseIntFlag(f[k] as string, k, min);
  const layer = parseIntFlag((f.layer as string | undefined) ?? '12', 'layer', 0);
  const hybrid = qwen35_2B(layer);
  const dense: Qwen3Config = {
    hiddenSize: 2048, intermediateSize: 6144, numLayers: Math.max(28, layer + 1), numHeads: 16, numKvHeads: 8, headDim: 128,
    rmsNormEps: 1e-6, ropeTheta: 1e6, vocabSize: 151936, tieWordEmbeddings: true, torchDtype: 'bfloat16',
  };
  const denseModel = denseQwen3(dense);
  const job0 = { layer, batch: int('batch'), seq: int('seq'), threads: int('threads'), iters: int('iters'), prepacking: !f['no-prepack'] };
  const work = typeof f.keep === 'string' ? f.keep : mkdtempSync(join(tmpdir(), 'toxscope-bench-qwen35-'));
  mkdirSync(work, { recursive: true });
  const log = (m: string) => !f.json && process.stdout.write(m);
  const denseDir = join(work, 'dense'), hybridDir = join(work, 'qwen3.5');
  try {
    const cacheDir = join(work, 'graph-cache');
    let t0 = performance.now();
    if (!sameCheckpoint(denseDir, denseModel, layer)) {
      log(`writing random bf16 dense weights (layers 0..${layer}) to ${denseDir} ... `);
      writeRandomCheckpoint(denseDir, denseModel, layer, 1234);
      log('done\n');
    }
    if (!sameQwen35Checkpoint(hybridDir, hybrid, layer)) {
      log(`writing random Qwen3.5-2B-shaped weights (layers 0..${layer}) to ${hybridDir} ... `);
      writeRandomQwen35Checkpoint(hybridDir, hybrid, layer, 4321);
      log('done\n');
    }
    const genSeconds = (performance.now() - t0) / 1000;
    t0 = performance.now();
    const graphs = [{ label: 'dense', modelDir: denseDir }, { label: 'qwen3.5', modelDir: hybridDir }];
    for (const gr of graphs) {
      log(`building the ${gr.label} graph ... `);
      const ckpt = Checkpoint.open(gr.modelDir);
      ensureGraph(cacheDir, ckpt, layer, null, 'f32', {});
      ckpt.close();
      log('done\n');
    }
    const buildSeconds = (performance.now() - t0) / 1000;
    log('measuring (child process; dense and qwen3.5 runs alternating) ...\n');
    const job: Job = { ...job0, modelDir: denseDir, cacheDir, matmul: { m: 1024, k: 2048, n: 6144 }, phases: [graphs] };
    const r = runWorker(job);
    const tokens = job.batch * job.seq;
    const per = (label: string, flops: number) => {
      const t = r.labelled![label];
      const sec = median(t.seconds);
      return { tokens_per_s: round(tokens / sec, 1), seconds_per_batch: round(sec, 3), seconds_all: t.seconds.map((x) => round(x, 3)), effective_gflops: round((flops * tokens) / sec / 1e9, 1), flops_per_token: flops, load_s: round(t.loadSeconds, 2) };
    };
    const h = per('qwen3.5', qwen35FlopsPerToken(hybrid, layer, job.seq));
    const d = per('dense', denseModel.flopsPerToken(layer, job.seq));
    const result = {
      bench: 'engine',
      family: 'qwen3.5',
      tokens_per_s: h.tokens_per_s,
      forward_gflops: h.effective_gflops,
      dense_tokens_per_s: d.tokens_per_s,
      dense_forward_gflops: d.effective_gflops,
      qwen35_to_dense_flops_ratio: round(h.effective_gflops / d.effective_gflops, 3),
      batch: job.batch, seq: job.seq, layer, threads: job.threads, provider: r.labelled!['qwen3.5'].provider,
      shape: { family: 'qwen3.5', hidden: hybrid.hiddenSize, intermediate: hybrid.intermediateSize, deltanet: hybrid.deltaNet, attention: hybrid.attention, full_attention_layers: hybrid.layerTypes.flatMap((t, l) => (t === 'full_attention' && l <= layer ? [l] : [])), vocab: hybrid.vocabSize },
      dense_shape: denseModel.describe,
      qwen35: h,
      dense: d,
      peak_rss_mb: round(r.peakRssMb, 0),
      matmul_gflops: round(r.matmul.gflops, 1),
      build_s: round(buildSeconds, 1),
      weights_gen_s: round(genSeconds, 1),
    };
    if (f.json) process.stdout.write(JSON.stringify(result) + '\n');
    else
      process.stdout.write(
        [
          `Qwen3.5-2B shape to layer ${layer}, batch ${job.batch} x ${job.seq}, ${job.threads} threads, ${result.provider}`,
          `  qwen3.5: ${h.tokens_per_s} tokens/s, effective ${h.effective_gflops} GFLOP/s (${(h.flops_per_token / 1e6).toFixed(0)} MFLOP/token); dense Qwen3 (hidden 2048, MLP 6144, 16/8 heads of 128) alternating: ${d.tokens_per_s} tokens/s, ${d.effective_gflops} GFLOP/s -> Qwen3.5 / dense ${(100 * result.qwen35_to_dense_flops_ratio).toFixed(1)}% (target >= 80%)`,
          `  peak RSS ${result.peak_rss_mb} MB (child process, both engines); fp32 MatMul probe ${result.matmul_gflops} GFLOP/s`,
          '',
        ].join('\n'),
      );
    return 0;
  } finally {
    if (typeof f.keep !== 'string') rmSync(work, { recursive: true, force: true });
  }
}
