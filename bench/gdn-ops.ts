/**
 * bench gdn-ops: the Gated DeltaNet's two sequence operators in onnxruntime, each against a decomposition into
 * plain ops, on random inputs at a real shape (default Qwen3.5-2B: 16 heads of 128, conv over 6144 channels,
 * kernel 4; batch 8 x 128). Reports the median ms per call (runs alternate between the forms compared) and the largest difference between
 * the forms.
 *
 *   npm run -s bench -- gdn-ops [--json] [--batch 8] [--seq 128] [--heads 16] [--value-heads 16] [--dk 128] [--dv 128]
 *       [--kernel 4] [--threads 2] [--iters 5]
 *
 * Recurrence: com.microsoft LinearAttention (update_rule gated_delta) vs the same rule unrolled over the T steps
 *   (per step: S *= exp(g); r = k^T S; S += k (x) beta (v - r); o = q^T S as batched MatMuls over B*Hv heads).
 * Conv + SiLU: ai.onnx Conv (group = C) on [B, C, T] with the two transposes the [N, C] layout needs (what the
 *   graph uses) vs com.microsoft CausalConvWithState (activation silu, same transposes) vs K shifted slices on
 *   [B, T, C] (no transposes).
 * The unrolled graph fixes T at build time: it is a measurement, not something the engine could ship.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseFlags, parseIntFlag } from '../src/cli/args.js';
import { GraphBuilder, TensorDataType, attr } from '../src/model/onnx/graph-builder.js';
import { causalConvSilu } from '../src/model/blocks/gated-deltanet.js';
import { HostTensor, OrtSession } from '../src/runtime/session.js';
import { Rng } from '../src/util/random.js';

const FLAGS = {
  json: { type: 'boolean', default: false },
  batch: { type: 'string', default: '8' },
  seq: { type: 'string', default: '128' },
  heads: { type: 'string', default: '16' },
  'value-heads': { type: 'string', default: '16' },
  dk: { type: 'string', default: '128' },
  dv: { type: 'string', default: '128' },
  kernel: { type: 'string', default: '4' },
  threads: { type: 'string', default: '2' },
  iters: { type: 'string', default: '5' },
} as const;

const MS = 'com.microsoft';
const OPSETS = [{ domain: '', version: 23 }, { domain: MS, version: 1 }];

export async function run(argv: string[]): Promise<number> {
  const f = parseFlags(argv, FLAGS);
  const n = (flag: keyof typeof FLAGS) => parseIntFlag(f[flag] as string, flag, 1);
  const B = n('batch'), T = n('seq');
  const Hk = n('heads'), Hv = n('value-heads');
  const dk = n('dk'), dv = n('dv'), K = n('kernel');
  const threads = n('threads'), iters = n('iters');
  const C = 2 * Hk * dk + Hv * dv;
  const rng = new Rng(7);
  const rand = (n: number, scale: number, offset = 0) => Float32Array.from({ length: n }, () => offset + scale * rng.normal());
  const dir = mkdtempSync(join(tmpdir(), 'toxscope-gdn-ops-'));
  try {
    // --- recurrence inputs: unit-norm q/k (as after l2norm), log-decay in [-0.45, 0], beta in (0, 1)
    const unit = (n: number) => {
      const x = rand(n * dk, 1);
      for (let r = 0; r < n; r++) {
        let s = 0;
        for (let i = 0; i < dk; i++) s += x[r * dk + i] ** 2;
        for (let i = 0; i < dk; i++) x[r * dk + i] /= Math.sqrt(s);
      }
      return x;
    };
    const q = unit(B * T * Hk), k = unit(B * T * Hk), v = rand(B * T * Hv * dv, 1);
    const decay = Float32Array.from({ length: B * T * Hv }, () => -0.45 * rng.next());
    const beta = Float32Array.from({ length: B * T * Hv }, () => rng.next());
    const feeds: Record<string, HostTensor> = {
      q: { type: 'float32', data: q, dims: [B, T, Hk * dk] },
      k: { type: 'float32', data: k, dims: [B, T, Hk * dk] },
      v: { type: 'float32', data: v, dims: [B, T, Hv * dv] },
      decay: { type: 'float32', data: decay, dims: [B, T, Hv] },
      beta: { type: 'float32', data: beta, dims: [B, T, Hv] },
    };
    const { fused, unrolled } = await timeGraphs(dir, { fused: linearAttentionGraph(B, T, Hk, Hv, dk, dv), unrolled: unrolledGraph(B, T, Hk, Hv, dk, dv) }, feeds, threads, iters);
    const recurrenceDiff = maxDiff(fused.out, unrolled.out);

    // --- conv inputs
    const u = rand(B * T * C, 1);
    const weight = rand(C * K, 0.3);
    const convFeeds: Record<string, HostTensor> = { u: { type: 'float32', data: u, dims: [B * T, C] } };
    const { slices, ccws, conv } = await timeGraphs(
      dir,
      { slices: convGraph('slices', B, T, C, K, weight), ccws: convGraph('CausalConvWithState', B, T, C, K, weight), conv: convGraph('Conv', B, T, C, K, weight) },
      convFeeds,
      threads,
      iters,
    );

    const result = {
      shape: { batch: B, seq: T, keyHeads: Hk, valueHeads: Hv, dk, dv, convChannels: C, kernel: K },
      threads,
      iters,
      recurrence: { linearAttentionMs: fused.ms, unrolledMs: unrolled.ms, speedup: unrolled.ms / fused.ms, maxAbsDiff: recurrenceDiff },
      conv: {
        shiftedSlicesMs: slices.ms,
        causalConvWithStateMs: ccws.ms,
        convGroupMs: conv.ms,
        maxAbsDiffCcws: maxDiff(slices.out, ccws.out),
        maxAbsDiffConv: maxDiff(slices.out, conv.out),
      },
      note: 'median of iters after one warm-up; shared machine: compare ratios within one run',
    };
    if (f.json) process.stdout.write(JSON.stringify(result) + '\n');
    else {
      process.stdout.write(`Gated DeltaNet ops, B=${B} T=${T} Hk=${Hk} Hv=${Hv} dk=${dk} dv=${dv} C=${C} K=${K}, ${threads} threads (median of ${iters})\n`);
      process.stdout.write(`  recurrence: LinearAttention ${fused.ms.toFixed(2)} ms, unrolled ops ${unrolled.ms.toFixed(2)} ms (${result.recurrence.speedup.toFixed(1)}x), max |diff| ${recurrenceDiff.toExponential(2)}\n`);
      process.stdout.write(`  conv: shifted slices ${slices.ms.toFixed(2)} ms, CausalConvWithState+transposes ${ccws.ms.toFixed(2)} ms, Conv(group=C)+transposes ${conv.ms.toFixed(2)} ms; max |diff| ${result.conv.maxAbsDiffCcws.toExponential(2)} / ${result.conv.maxAbsDiffConv.toExponential(2)}\n`);
    }
    return 0;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Median ms per run of each graph on the same feeds, after one warm-up each. Runs alternate between the graphs
 * (a, b, c, a, b, c, ...) so that load from elsewhere on a shared machine hits them alike.
 */
async function timeGraphs(dir: string, graphs: Record<string, GraphBuilder>, feeds: Record<string, HostTensor>, threads: number, iters: number): Promise<Record<string, { ms: number; out: Float32Array }>> {
  const sessions: [string, OrtSession][] = [];
  try {
    for (const [name, g] of Object.entries(graphs)) {
      const path = join(dir, `${name}.onnx`);
      writeFileSync(path, g.encode(OPSETS, {}, 'bench'));
      sessions.push([name, await OrtSession.create(path, { threads })]);
    }
    const run = async (s: OrtSession) => (await s.run(Object.fromEntries(Object.entries(feeds).filter(([n]) => s.inputNames.includes(n))), ['out'])).out.data as Float32Array;
    const outs = new Map<string, Float32Array>();
    for (const [name, s] of sessions) outs.set(name, await run(s)); // warm-up
    const times = new Map<string, number[]>(sessions.map(([n]) => [n, []]));
    for (let i = 0; i < iters; i++)
      for (const [name, s] of sessions) {
        const t0 = performance.now();
        await run(s);
        times.get(name)!.push(performance.now() - t0);
      }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    return Object.fromEntries(sessions.map(([n]) => [n, { ms: median(times.get(n)!), out: outs.get(n)! }]));
  } finally {
    for (const [, s] of sessions) await s.close();
  }
}

function inputs(g: GraphBuilder, B: number, T: number, Hk: number, Hv: number, dk: number, dv: number) {
  return {
    q: g.input('q', TensorDataType.FLOAT, [B, T, Hk * dk]),
    k: g.input('k', TensorDataType.FLOAT, [B, T, Hk * dk]),
    v: g.input('v', TensorDataType.FLOAT, [B, T, Hv * dv]),
    decay: g.input('decay', TensorDataType.FLOAT, [B, T, Hv]),
    beta: g.input('beta', TensorDataType.FLOAT, [B, T, Hv]),
  };
}

function linearAttentionGraph(B: number, T: number, Hk: number, Hv: number, dk: number, dv: number): GraphBuilder {
  const g = new GraphBuilder();
  const i = inputs(g, B, T, Hk, Hv, dk, dv);
  g.node('LinearAttention', [i.q, i.k, i.v, '', i.decay, i.beta], {
    domain: MS,
    outputs: ['out', 'state'],
    attrs: { q_num_heads: attr.int(Hk), kv_num_heads: attr.int(Hv), update_rule: attr.string('gated_delta'), scale: attr.float(1 / Math.sqrt(dk)) },
  });
  g.output('out', TensorDataType.FLOAT, [B, T, Hv * dv]);
  return g;
}

/** The gated delta rule unrolled over T steps, batched over the B*Hv (sequence, value head) pairs. */
function unrolledGraph(B: number, T: number, Hk: number, Hv: number, dk: number, dv: number): GraphBuilder {
  const g = new GraphBuilder();
  const i = inputs(g, B, T, Hk, Hv, dk, dv);
  const group = Hv / Hk;
  // Heads first: [T, B*Hv, ...]; key/query heads repeated to value heads (consecutive value heads share one).
  const perValueHead = (t: string, heads: number, d: number) => {
    const r = g.op('Reshape', [t, g.constI64('r', [B, T, heads, 1, d])]);
    const rep = group > 1 ? g.op('Expand', [r, g.constI64('e', [B, T, heads, group, d])]) : r;
    return g.op('Transpose', [g.op('Reshape', [rep, g.constI64('r2', [B, T, Hv, d])])], { perm: attr.ints([1, 0, 2, 3]) }); // [T, B, Hv, d]
  };
  const q = g.op('Reshape', [perValueHead(i.q, Hk, dk), g.constI64('q4', [T, B * Hv, 1, dk])]);
  const kRow = g.op('Reshape', [perValueHead(i.k, Hk, dk), g.constI64('k4', [T, B * Hv, 1, dk])]);
  const kCol = g.op('Reshape', [kRow, g.constI64('kc', [T, B * Hv, dk, 1])]);
  const v = g.op('Reshape', [g.op('Transpose', [g.op('Reshape', [i.v, g.constI64('v4', [B, T, Hv, dv])])], { perm: attr.ints([1, 0, 2, 3]) }), g.constI64('v3', [T, B * Hv, 1, dv])]);
  const perHead = (t: string) => g.op('Reshape', [g.op('Transpose', [t], { perm: attr.ints([1, 0, 2]) }), g.constI64('s', [T, B * Hv, 1, 1])]);
  const expDecay = perHead(g.op('Exp', [i.decay]));
  const beta = perHead(i.beta);
  let S = g.constF32('S0', new Float32Array(B * Hv * dk * dv), [B * Hv, dk, dv]);
  const outs: string[] = [];
  const at = (t: string, step: number) => g.op('Gather', [t, g.constI64('t', [step], [])], { axis: attr.int(0) });
  const scale = g.constF32('scale', [1 / Math.sqrt(dk)], []);
  for (let t = 0; t < T; t++) {
    S = g.op('Mul', [S, at(expDecay, t)]); //                                                 [BH, dk, dv]
    const r = g.op('MatMul', [at(kRow, t), S]); //                                            [BH, 1, dv]
    const delta = g.op('Mul', [at(beta, t), g.op('Sub', [at(v, t), r])]);
    S = g.op('Add', [S, g.op('MatMul', [at(kCol, t), delta])]);
    outs.push(g.op('MatMul', [at(q, t), S])); //                                               [BH, 1, dv]
  }
  const o = g.op('Mul', [g.op('Concat', outs, { axis: attr.int(1) }), scale]); //            [BH, T, dv]
  const o4 = g.op('Transpose', [g.op('Reshape', [o, g.constI64('o4', [B, Hv, T, dv])])], { perm: attr.ints([0, 2, 1, 3]) });
  g.node('Reshape', [o4, g.constI64('o3', [B, T, Hv * dv])], { outputs: ['out'] });
  g.output('out', TensorDataType.FLOAT, [B, T, Hv * dv]);
  return g;
}

/** silu(causal conv(u)) on [B, T, C] in one of three forms (the graph's u and output are [B*T, C] / [B, T, C]). */
function convGraph(form: 'slices' | 'CausalConvWithState' | 'Conv', B: number, T: number, C: number, K: number, weight: Float32Array): GraphBuilder {
  const g = new GraphBuilder();
  const u = g.input('u', TensorDataType.FLOAT, [B * T, C]);
  const btc = g.op('Reshape', [u, g.constI64('btc', [B, T, C])]);
  const silu = (t: string) => g.op('Mul', [t, g.op('Sigmoid', [t])]);
  let y: string;
  if (form === 'slices') y = silu(shiftedSlicesConv(g, btc, weight, C, K));
  else if (form === 'Conv') y = causalConvSilu(g, btc, weight, C, K); // what the graph uses
  else {
    const bct = g.op('Transpose', [btc], { perm: attr.ints([0, 2, 1]) }); //                     [B, C, T]
    const w = g.constF32('w', weight, [C, 1, K]);
    const conv = g.node('CausalConvWithState', [bct, w], { domain: MS, outputs: 2, attrs: { activation: attr.string('silu') } })[0];
    y = g.op('Transpose', [conv], { perm: attr.ints([0, 2, 1]) }); //                            [B, T, C]
  }
  g.node('Identity', [y], { outputs: ['out'] });
  g.output('out', TensorDataType.FLOAT, [B, T, C]);
  return g;
}

/** out_t = sum_j w[:, j] * u_{t-K+1+j} on [B, T, C] without transposes: K-1 zeros padded in front of T, K shifted slices. */
function shiftedSlicesConv(g: GraphBuilder, u: string, weight: Float32Array, C: number, K: number): string {
  const padded = g.op('Pad', [u, g.constI64('conv_pads', [0, K - 1, 0, 0, 0, 0])]); //                  [B, T+K-1, C]
  let acc = '';
  for (let j = 0; j < K; j++) {
    const tap = Float32Array.from({ length: C }, (_, ch) => weight[ch * K + j]);
    const end = j === K - 1 ? Number.MAX_SAFE_INTEGER : -(K - 1 - j); // rows j .. j+T-1 of the padded sequence
    const shifted = g.op('Slice', [padded, g.constI64('s', [j]), g.constI64('e', [end]), g.constI64('a', [1])]);
    const term = g.op('Mul', [shifted, g.constF32('tap', tap)]);
    acc = acc ? g.op('Add', [acc, term]) : term;
  }
  return acc;
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
