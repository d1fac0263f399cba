/**
 * Which int8 weight form this machine's onnxruntime multiplies correctly (src/model/blocks/int8.ts,
 * Int8WeightForm), found by running the kernel rather than by reading CPU flags: onnxruntime's u8 x s8 kernel
 * saturates on x86 CPUs without VNNI (VPMADDUBSW adds two u8 x s8 products into an int16), and which kernel it
 * picks depends on the CPU, the build and its version. The probe multiplies the worst case the int8 graph can
 * produce, activations all at the top of the uint8 range (255) times weights all at +127:
 *
 *   x [4, 64 + 2] = 1 (two anchor columns +1, -1 as dqmm-row appends)   W [66, 8] = 127 (anchor rows 0)
 *   exact: 64 per output; a saturating kernel returns about 1
 *
 * 's8' (full-range int8, the fast kernel) when the result is right, else 'u8' (uint8 weights with zero point 128:
 * the u8 x u8 kernel, which cannot saturate). Measured on an AVX2-only AMD EPYC (2 cores, quiet), `npm run -s bench --
 * int8-matmul --models 0.6b --seconds 0.3 --candidates f32,dqmm_row_s8,dqmm_row_7bit,dqmm_row_u8`: one 0.6B layer's
 * projections x1.41 of float32 for the (wrong) full-range s8, x1.27 for 7-bit s8, x1.10 for u8; gaussian relative
 * error 1.8e-2 (s8, saturating), 1.8e-2 (7-bit), 1.1e-2 (u8, as full-range s8 on a VNNI machine). 7-bit's coarser
 * weights took the dense goldens' layer-1 residual to 5.2% and Qwen3.5-MoE's layer 3 to 15.3% (u8: within the
 * 3.5% / 12.2% of VNNI machines), so u8: int8 keeps its fidelity everywhere and is mostly a memory saving on such
 * CPUs. Also tried: full-range weights with activations confined to [0, 128] (anchor columns +3, -1), which cannot
 * saturate either and ran as fast as s8, but its error with outlier channels doubled (1.2e-1 against 5.9e-2). The answer is settled once per process and set into INT8_GRAPH_CHOICES before any int8 graph is built or
 * looked up, so it is part of the graph cache key: a cache shared by different machines keeps both graphs.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { INT8_GRAPH_CHOICES, type Int8WeightForm, int8Linear } from '../model/blocks/int8.js';
import { GraphBuilder, TensorDataType } from '../model/onnx/graph-builder.js';
import { OrtSession } from '../runtime/session.js';

const K = 64, N = 8, M = 4;

/** Whether full-range int8 weights multiply correctly here: the probe's worst case within 1%. */
export async function fullRangeInt8IsExact(): Promise<boolean> {
  const dir = mkdtempSync(join(tmpdir(), 'toxscope-int8-probe-'));
  try {
    const g = new GraphBuilder();
    const x = g.input('x', TensorDataType.FLOAT, [M, K]);
    // weights all equal: per-column scale 1/127, every q = +127; the product of a row of ones is K
    g.node('Identity', [int8Linear(g, x, 'w', new Float32Array(K * N).fill(1), K, N, 'dqmm-row', undefined, 's8')], { outputs: ['y'] });
    g.output('y', TensorDataType.FLOAT, [M, N]);
    const path = join(dir, 'probe.onnx');
    writeFileSync(path, g.encode([{ domain: '', version: 23 }, { domain: 'com.microsoft', version: 1 }]));
    const s = await OrtSession.create(path, { threads: 1 });
    try {
      const y = (await s.run({ x: { type: 'float32', data: new Float32Array(M * K).fill(1), dims: [M, K] } })).y.data as Float32Array;
      return y.every((v) => Math.abs(v - K) <= 0.01 * K);
    } finally {
      await s.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

let settled: Promise<Int8WeightForm> | undefined;

/** Probes once per process and sets INT8_GRAPH_CHOICES.weightForm; call before building or looking up an int8 graph. */
export function settleInt8WeightForm(): Promise<Int8WeightForm> {
  settled ??= fullRangeInt8IsExact().then((exact) => (INT8_GRAPH_CHOICES.weightForm = exact ? 's8' : 'u8'));
  return settled;
}
