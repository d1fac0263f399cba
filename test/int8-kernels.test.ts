/**
 * The int8 projection kernels of src/model/blocks/int8.ts on one matrix: 'dqmm-row' (the default) gives every row the
 * same result whatever rows it is batched with, and stays within the per-row int8 error bound; plain 'dqmm' (one
 * activation scale per batch) does not have the first property, which is why it is not the default. The weight form
 * is the one this machine's probe settles (src/engine/int8-weight-form.ts): on x86 without VNNI full-range int8
 * weights saturate onnxruntime's u8 x s8 kernel, and the bound below fails with them.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Int8Kernel, type Int8WeightForm, int8Linear, int8WeightLevels } from '../src/model/blocks/int8.js';
import { fullRangeInt8IsExact, settleInt8WeightForm } from '../src/engine/int8-weight-form.js';
import { GraphBuilder, TensorDataType } from '../src/model/onnx/graph-builder.js';
import { quantizeColumns } from '../src/model/quantize.js';
import { OrtSession } from '../src/runtime/session.js';
import { Rng } from '../src/util/random.js';

const dir = mkdtempSync(join(tmpdir(), 'toxscope-int8-kernels-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeAll(async () => {
  await settleInt8WeightForm();
});

const K = 96, N = 40;
const rng = new Rng(21);
const wT = rng.normalArray(K * N, 0.05); //                                                           [K, N] (in, out)
const x = rng.normalArray(6 * K, 1); //                                                                6 rows
for (let i = 0; i < K; i++) x[5 * K + i] *= 40; //                                                     an outlier token
x[2 * K + 7] = -9; //                                                                                  an outlier channel

async function project(kernel: Int8Kernel, rows: Float32Array, m: number, weights = wT, form?: Int8WeightForm): Promise<Float32Array> {
  const g = new GraphBuilder();
  const xin = g.input('x', TensorDataType.FLOAT, ['n', K]);
  g.node('Identity', [int8Linear(g, xin, 'w', weights, K, N, kernel, undefined, form)], { outputs: ['y'] });
  g.output('y', TensorDataType.FLOAT, ['n', N]);
  const path = join(dir, `${kernel}-${Math.random().toString(36).slice(2)}.onnx`);
  writeFileSync(path, g.encode([{ domain: '', version: 23 }, { domain: 'com.microsoft', version: 1 }]));
  const s = await OrtSession.create(path, { threads: 1 });
  try {
    return (await s.run({ x: { type: 'float32', data: rows, dims: [m, K] } })).y.data as Float32Array;
  } finally {
    await s.close();
  }
}

describe('int8 projection kernels', () => {
  it("'dqmm-row' gives each row the same bits alone as in a batch with an outlier token, within |x| s/2 + max|x|/255 |w_hat| of the float64 product", async () => {
    const batch = await project('dqmm-row', x, 6);
    const { q, scale } = quantizeColumns(wT, K, N, int8WeightLevels());
    for (let r = 0; r < 6; r++) {
      const alone = await project('dqmm-row', x.slice(r * K, (r + 1) * K), 1);
      expect(Array.from(alone), `row ${r}`).toEqual(Array.from(batch.subarray(r * N, (r + 1) * N)));
      let rowMax = 0, l1 = 0;
      for (let i = 0; i < K; i++) {
        rowMax = Math.max(rowMax, Math.abs(x[r * K + i]));
        l1 += Math.abs(x[r * K + i]);
      }
      for (let o = 0; o < N; o++) {
        let exact = 0, wHat1 = 0;
        for (let i = 0; i < K; i++) {
          exact += x[r * K + i] * wT[i * N + o];
          wHat1 += Math.abs(q[i * N + o] * scale[o]);
        }
        const bound = (l1 * scale[o]) / 2 + (rowMax / 255) * wHat1;
        expect(Math.abs(batch[r * N + o] - exact), `row ${r} out ${o}`).toBeLessThanOrEqual(bound * 1.001 + 1e-5);
      }
    }
  });

  it("plain 'dqmm' changes a row's result when an outlier token joins its batch (one activation scale per batch)", async () => {
    const batch = await project('dqmm', x, 6);
    const alone = await project('dqmm', x.slice(0, K), 1);
    expect(Array.from(alone)).not.toEqual(Array.from(batch.subarray(0, N)));
  });

  it('multiplies the worst case right in the weight form settled for this machine, and the 7-bit and uint8 forms do everywhere', async () => {
    // every activation at the top of the uint8 range (x = its row max) times every weight at the top of the int8
    // range: the sum a saturating u8 x s8 kernel gets wrong (about 1/64 of it on an AVX2-only CPU)
    const ones = new Float32Array(K * N).fill(0.5), xs = new Float32Array(3 * K).fill(2);
    for (const form of [undefined, 's8-7bit', 'u8'] as const) {
      const y = await project('dqmm-row', xs, 3, ones, form);
      for (const v of y) expect(v, `form ${form ?? 'settled'}`).toBeCloseTo(K, 0);
    }
    // the probe's answer is what full-range weights do here
    const full = await project('dqmm-row', xs, 3, ones, 's8');
    expect(full.every((v) => Math.abs(v - K) <= 0.01 * K)).toBe(await fullRangeInt8IsExact());
  });
});
