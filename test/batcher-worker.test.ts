/** The forward engine on a worker thread gives the in-process engine's codes and leaves the main thread free. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WorkerEngine } from '../src/engine/engine-worker.js';
import { ForwardEngine } from '../src/engine/forward-engine.js';
import { ToxScopeError } from '../src/errors.js';
import { loadSae } from '../src/model/sae/load.js';
import { goldenCheckpointDir, goldensDir } from './helpers/goldens.js';

const cacheDir = mkdtempSync(join(tmpdir(), 'toxscope-worker-'));
const sae = loadSae(join(goldensDir, 'sae-saelens-L2'));
const options = { modelDir: goldenCheckpointDir, layer: 2, sae, cacheDir, threads: 1 };
let worker: WorkerEngine;
let local: ForwardEngine;
beforeAll(async () => {
  local = await ForwardEngine.open(options);
  worker = await WorkerEngine.open(options);
});
afterAll(async () => {
  await worker?.close();
  await local?.close();
  rmSync(cacheDir, { recursive: true, force: true });
});

const ids = [
  [9707, 1879, 0, 151935, 42],
  [17, 18],
  Array.from({ length: 40 }, (_, i) => (i * 7919) % 151000),
];

describe('WorkerEngine', () => {
  it('returns exactly the in-process engine codes, right and left padded', async () => {
    for (const padding of ['right', 'left'] as const) {
      const a = await local.runTopK(ids, padding);
      const b = await worker.runTopK(ids, padding);
      expect({ batch: b.batch, seqLen: b.seqLen, k: b.k }).toEqual({ batch: a.batch, seqLen: a.seqLen, k: a.k });
      expect(b.values).toEqual(a.values);
      expect(b.indices).toEqual(a.indices);
      expect(b.mask).toEqual(a.mask);
    }
    expect(worker.info).toMatchObject({ layer: 2, dModel: 64, sae: { dSae: 512, k: 16 } });
  });

  it('keeps the main thread free while a batch runs', async () => {
    const big = Array.from({ length: 16 }, (_, r) => Array.from({ length: 128 }, (_, i) => (r * 131 + i * 17) % 150000));
    let settled = false;
    const run = worker.runTopK(big).then(() => (settled = true));
    await new Promise((r) => setImmediate(r));
    expect(settled).toBe(false); // the main thread got here while the worker computes
    await run;
    expect(settled).toBe(true);
  });

  it('reports engine errors as the same ToxScopeError kinds and keeps working', async () => {
    const e = await worker.runTopK([[1, 999_999]]).catch((x) => x);
    expect(e).toBeInstanceOf(ToxScopeError);
    expect(e.kind).toBe('validation');
    expect(e.message).toMatch(/999999 is outside the vocabulary/);
    expect((await worker.runTopK([[5, 6]])).batch).toBe(1);
  });

  it('refuses a checkpoint it cannot open, naming it', async () => {
    const e = await WorkerEngine.open({ ...options, modelDir: join(cacheDir, 'missing') }).catch((x) => x);
    expect(e).toBeInstanceOf(ToxScopeError);
    expect(e.message).toMatch(/missing/);
  });

  it('answers unavailable after close', async () => {
    const w = await WorkerEngine.open(options);
    await w.close();
    const e = await w.runTopK([[1]]).catch((x) => x);
    expect(e).toBeInstanceOf(ToxScopeError);
    expect(e.kind).toBe('unavailable');
  });
});
