/**
 * bench int8-matmul: onnxruntime's int8 MatMul candidates against float32 MatMul at the projection shapes of
 * Qwen3-0.6B and Qwen3-1.7B with M = 8 x 128 tokens, all in one process, runs alternating round-robin so load
 * from elsewhere on a shared machine hits every candidate alike (compare ratios within one run only).
 *
 *   npm run -s bench -- int8-matmul [--json] [--threads 2] [--m 1024] [--seconds 1.5] [--models 0.6b,1.7b]
 *
 * Candidates (weights symmetric int8; what differs is how activations are quantized and which kernel runs):
 *   f32          MatMul, float32 weights [K, N]
 *   dqmm         com.microsoft DynamicQuantizeMatMul: activations uint8, ONE scale for the whole [M, K] batch
 *                (what PyTorch's quantize_dynamic does); weights int8 per output channel
 *   dqmm_row     the engine's 'dqmm-row' kernel (src/model/blocks/int8.ts): every row divided by its own max |x|, one
 *                constant row (1, -1, 0, ...) appended so DQMM's batch scale is fixed, product times the row max:
 *                per-row activation scales through the DQMM kernel
 *   rowq_u8      per-row activation scale computed in the graph (ReduceMax |x| / 127, QuantizeLinear axis 0, uint8
 *                with zero point 128) -> com.microsoft MatMulIntegerToFloat (uint8 x int8) -> x row scale
 *   rowq_mmitf   the same with int8 activations (int8 x int8: a slow path in onnxruntime 1.30)
 *   rowq_mmi     the same with ai.onnx MatMulInteger -> Cast -> x (row scale * column scale)
 *   nbits8_bB    com.microsoft MatMulNBits bits 8, block B along K, accuracy_level 4 (activations int8 per
 *                row and block, in the kernel)
 * Fidelity: relative Frobenius error against a float64 product on sampled rows, for gaussian activations and
 * for activations with two outlier channels (x30) and one outlier token (x50), as Qwen residuals have.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseFlags, parseIntFlag } from '../src/cli/args.js';
import { int8Linear } from '../src/model/blocks/int8.js';
import { ExternalDataFile, GraphBuilder, TensorDataType, attr } from '../src/model/onnx/graph-builder.js';
import { quantizeBlocked, quantizePerChannel, transposeI8 } from '../src/model/quantize.js';
import { OrtSession } from '../src/runtime/session.js';
import { Rng } from '../src/util/random.js';

const FLAGS = {
  json: { type: 'boolean', default: false },
  threads: { type: 'string', default: '2' },
  m: { type: 'string', default: '1024' },
  seconds: { type: 'string', default: '1.5' },
  models: { type: 'string', default: '0.6b,1.7b' },
  candidates: { type: 'string', default: 'f32,dqmm,dqmm_row,rowq_u8,nbits8_b32,nbits8_b128' },
} as const;

/** [name, K (in), N (out)] of the fused projections the engine runs per layer. */
const SHAPES: Record<string, [string, number, number][]> = {
  '0.6b': [['qkv', 1024, 4096], ['o', 2048, 1024], ['gate_up', 1024, 6144], ['down', 3072, 1024]],
  '1.7b': [['qkv', 2048, 4096], ['o', 2048, 2048], ['gate_up', 2048, 12288], ['down', 6144, 2048]],
};

type Candidate = string;

export async function run(argv: string[]): Promise<number> {
  const f = parseFlags(argv, FLAGS);
  const threads = parseIntFlag(f.threads as string, 'threads', 1);
  const M = parseIntFlag(f.m as string, 'm', 1);
  const budget = Number(f.seconds);
  const candidates = (f.candidates as string).split(',');
  const work = mkdtempSync(join(tmpdir(), 'toxscope-bench-int8-'));
  const results: Record<string, unknown>[] = [];
  const log = (s: string) => !f.json && process.stdout.write(s);
  try {
    for (const model of (f.models as string).split(',')) {
      for (const [name, K, N] of SHAPES[model] ?? []) {
        const rng = new Rng(K * 31 + N);
        const w = rng.normalArray(N * K, 0.02); //                                                     [N, K] HF layout
        const xs = { gaussian: rng.normalArray(M * K, 1), outliers: withOutliers(rng.normalArray(M * K, 1), M, K) };
        const sessions = new Map<Candidate, OrtSession>();
        for (const c of candidates) {
          const dir = join(work, `${model}-${name}-${c}`);
          mkdirSync(dir);
          sessions.set(c, await OrtSession.create(buildCandidate(dir, c, w, K, N, M), { threads }));
        }
        const rows = [0, 1, 7, 100, 511, M - 1].filter((r) => r < M); // row 7 carries the outlier token
        const errors: Record<string, Record<string, number>> = {};
        for (const [kind, x] of Object.entries(xs)) {
          const ref = referenceRows(x, w, K, N, rows);
          for (const [c, s] of sessions) {
            const y = (await s.run({ x: { type: 'float32', data: x, dims: [M, K] } })).y.data as Float32Array;
            (errors[c] ??= {})[kind] = relError(y, ref, rows, N);
          }
        }
        // timing: warm-up, then round-robin until the budget is spent
        const feeds = { x: { type: 'float32' as const, data: xs.gaussian, dims: [M, K] } };
        for (const s of sessions.values()) await s.run(feeds);
        const seconds = new Map<Candidate, number[]>(candidates.map((c) => [c, []]));
        const t0 = performance.now();
        while (performance.now() - t0 < budget * 1000 * candidates.length || seconds.get(candidates[0])!.length < 5) {
          for (const [c, s] of sessions) {
            const t = performance.now();
            await s.run(feeds);
            seconds.get(c)!.push((performance.now() - t) / 1000);
          }
        }
        for (const s of sessions.values()) await s.close();
        const f32 = median(seconds.get('f32') ?? [NaN]);
        for (const c of candidates) {
          const sec = median(seconds.get(c)!);
          const r = {
            model, proj: name, m: M, k: K, n: N, candidate: c,
            ms: round(sec * 1000, 2), gflops: round((2 * M * K * N) / sec / 1e9, 1), speedup_vs_f32: round(f32 / sec, 2),
            rel_err_gaussian: errors[c].gaussian, rel_err_outliers: errors[c].outliers, runs: seconds.get(c)!.length,
          };
          results.push(r);
          log(`${model} ${name.padEnd(8)} [${M}x${K}]x[${K}x${N}] ${c.padEnd(12)} ${String(r.ms).padStart(8)} ms ${String(r.gflops).padStart(7)} GFLOP/s x${r.speedup_vs_f32} vs f32   rel.err ${r.rel_err_gaussian.toExponential(1)} / outliers ${r.rel_err_outliers.toExponential(1)}\n`);
        }
      }
    }
    // totals per model: the time of one layer's four projections
    const totals: Record<string, Record<string, number>> = {};
    for (const r of results as { model: string; candidate: string; ms: number }[]) (totals[r.model] ??= {})[r.candidate] = round(((totals[r.model] ??= {})[r.candidate] ?? 0) + r.ms, 2);
    for (const [model, t] of Object.entries(totals))
      log(`${model} one layer's projections: ${Object.entries(t).map(([c, ms]) => `${c} ${ms} ms (x${round(t.f32 / ms, 2)})`).join(', ')}\n`);
    if (f.json) process.stdout.write(JSON.stringify({ bench: 'int8-matmul', threads, m: M, results, layer_ms: totals }) + '\n');
    return 0;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Two outlier channels (x30) on every row and one outlier token (row 7, x50). */
function withOutliers(x: Float32Array, M: number, K: number): Float32Array {
  for (let r = 0; r < M; r++) {
    x[r * K + 3] *= 30;
    x[r * K + K - 5] *= 30;
  }
  if (M > 7) for (let c = 0; c < K; c++) x[7 * K + c] *= 50;
  return x;
}

/** One-op graph x [M, K] -> y [M, N] for candidate `c`; returns the model path. */
function buildCandidate(dir: string, c: Candidate, w: Float32Array, K: number, N: number, M: number): string {
  const ext = new ExternalDataFile(join(dir, 'w.bin'));
  const g = new GraphBuilder(ext);
  const x = g.input('x', TensorDataType.FLOAT, [M, K]);
  let y: string;
  if (c === 'f32') {
    y = g.op('MatMul', [x, g.weight('w', TensorDataType.FLOAT, [K, N], transposeF32(w, N, K))]);
  } else if (c === 'dqmm') {
    const p = quantizePerChannel(w, N, K);
    y = g.op('DynamicQuantizeMatMul', [x, g.weight('wq', TensorDataType.INT8, [K, N], transposeI8(p.q, N, K)), g.weight('ws', TensorDataType.FLOAT, [N], p.scale)], {}, { domain: 'com.microsoft' });
  } else if (c === 'dqmm_row' || c === 'dqmm_row_s8' || c === 'dqmm_row_7bit' || c === 'dqmm_row_u8') {
    // dqmm_row: INT8_GRAPH_CHOICES.weightForm (u8 unless src/engine/int8-weight-form.ts ran); the others force one
    const form = c === 'dqmm_row' ? undefined : c === 'dqmm_row_s8' ? 's8' : c === 'dqmm_row_7bit' ? 's8-7bit' : 'u8';
    y = int8Linear(g, x, 'w', transposeF32(w, N, K), K, N, 'dqmm-row', undefined, form);
  } else if (c === 'rowq_mmitf' || c === 'rowq_mmi') {
    const p = quantizePerChannel(w, N, K);
    const rowScale = g.op('Max', [g.op('Mul', [g.op('ReduceMax', [g.op('Abs', [x]), g.constI64('ax', [-1])], { keepdims: attr.int(1) }), g.constF32('inv127', [1 / 127], [])]), g.constF32('tiny', [1e-30], [])]); // [M, 1]
    const xq = g.op('QuantizeLinear', [x, g.op('Reshape', [rowScale, g.constI64('flat', [-1])]), g.constant('zp', TensorDataType.INT8, [M], new Int8Array(M))], { axis: attr.int(0) }); // int8 [M, K]
    const wq = g.weight('wq', TensorDataType.INT8, [K, N], transposeI8(p.q, N, K));
    if (c === 'rowq_mmitf') {
      const yq = g.op('MatMulIntegerToFloat', [xq, wq, g.constF32('one', [1], []), g.weight('ws', TensorDataType.FLOAT, [N], p.scale)], {}, { domain: 'com.microsoft' });
      y = g.op('Mul', [yq, rowScale]);
    } else {
      const acc = g.op('MatMulInteger', [xq, wq]); //                                              int32 [M, N]
      y = g.op('Mul', [g.op('Cast', [acc], { to: attr.int(TensorDataType.FLOAT) }), g.op('Mul', [rowScale, g.weight('ws', TensorDataType.FLOAT, [N], p.scale)])]);
    }
  } else if (c === 'rowq_u8') {
    const p = quantizePerChannel(w, N, K);
    const rowScale = g.op('Max', [g.op('Mul', [g.op('ReduceMax', [g.op('Abs', [x]), g.constI64('ax', [-1])], { keepdims: attr.int(1) }), g.constF32('inv127', [1 / 127], [])]), g.constF32('tiny', [1e-30], [])]); // [M, 1]
    const xq = g.op('QuantizeLinear', [x, g.op('Reshape', [rowScale, g.constI64('flat', [-1])]), g.constant('zp', TensorDataType.UINT8, [M], new Uint8Array(M).fill(128))], { axis: attr.int(0) }); // uint8 [M, K]
    const wq = g.weight('wq', TensorDataType.INT8, [K, N], transposeI8(p.q, N, K));
    const yq = g.op('MatMulIntegerToFloat', [xq, wq, g.constF32('one', [1], []), g.weight('ws', TensorDataType.FLOAT, [N], p.scale), g.constant('azp', TensorDataType.UINT8, [], new Uint8Array([128]))], {}, { domain: 'com.microsoft' });
    y = g.op('Mul', [yq, rowScale]);
  } else if (c.startsWith('nbits8_b')) {
    const block = Number(c.slice('nbits8_b'.length));
    const p = quantizeBlocked(w, N, K, block);
    y = g.op('MatMulNBits', [x, g.weight('wq', TensorDataType.UINT8, [N, p.blocks, block], p.q), g.weight('ws', TensorDataType.FLOAT, [N * p.blocks], p.scale)], {
      K: attr.int(K), N: attr.int(N), bits: attr.int(8), block_size: attr.int(block), accuracy_level: attr.int(4),
    }, { domain: 'com.microsoft' });
  } else throw new Error(`unknown candidate ${c}`);
  g.node('Identity', [y], { outputs: ['y'] });
  g.output('y', TensorDataType.FLOAT, [M, N]);
  const path = join(dir, 'm.onnx');
  writeFileSync(path, g.encode([{ domain: '', version: 23 }, { domain: 'com.microsoft', version: 1 }]));
  ext.close();
  return path;
}

function transposeF32(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c];
  return out;
}

/** float64 x[rows] @ w^T: [rows.length, N]. */
function referenceRows(x: Float32Array, w: Float32Array, K: number, N: number, rows: number[]): Float64Array {
  const out = new Float64Array(rows.length * N);
  rows.forEach((r, i) => {
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += x[r * K + k] * w[n * K + k];
      out[i * N + n] = acc;
    }
  });
  return out;
}

function relError(y: Float32Array, ref: Float64Array, rows: number[], N: number): number {
  let num = 0, den = 0;
  rows.forEach((r, i) => {
    for (let n = 0; n < N; n++) {
      const d = y[r * N + n] - ref[i * N + n];
      num += d * d;
      den += ref[i * N + n] ** 2;
    }
  });
  return Number(Math.sqrt(num / den).toPrecision(3));
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const round = (x: number, d: number) => Math.round(x * 10 ** d) / 10 ** d;
