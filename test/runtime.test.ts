/**
 * The runtime boundary: execution-provider fallback, input validation naming each input's dtype and dims,
 * and the ONNX writer (external data, inline constants, typed attributes) as onnxruntime reads it.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isToxScopeError } from '../src/errors.js';
import { ExternalDataFile, GraphBuilder, TensorDataType, attr } from '../src/model/onnx/graph-builder.js';
import { OrtSession } from '../src/runtime/session.js';

const dir = mkdtempSync(join(tmpdir(), 'toxscope-runtime-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * y [N, 3] = x [N, 2] @ W [2, 3] + b, with W in external data and b inline;
 * top [N, 2] = TopK(y, 2) ids; also exercises negative int attributes (axis -1) and floats.
 */
function writeTinyModel(name: string): string {
  const ext = new ExternalDataFile(join(dir, `${name}.bin`));
  const g = new GraphBuilder(ext);
  const x = g.input('x', TensorDataType.FLOAT, ['n', 2]);
  ext.append(new Uint8Array(10)); // a leading unrelated blob: offsets must still line up
  const w = g.weight('w', TensorDataType.FLOAT, [2, 3], Float32Array.from([1, 2, 3, 4, 5, 6]));
  const y = g.op('Add', [g.op('MatMul', [x, w]), g.constF32('b', [0.5, -0.5, 0])]);
  g.node('Mul', [y, g.constF32('one', [1], [])], { outputs: ['y'] });
  const [, idx] = g.node('TopK', [y, g.constI64('k', [2])], { outputs: 2, attrs: { axis: attr.int(-1) } });
  g.node('Identity', [idx], { outputs: ['top'] });
  g.output('y', TensorDataType.FLOAT, ['n', 3]);
  g.output('top', TensorDataType.INT64, ['n', 2]);
  const model = join(dir, `${name}.onnx`);
  writeFileSync(model, g.encode([{ domain: '', version: 23 }]));
  ext.close();
  return model;
}

describe('ONNX writer', () => {
  it('writes a model onnxruntime runs, with weights read from page-aligned external data', async () => {
    const model = writeTinyModel('affine');
    expect(statSync(join(dir, 'affine.bin')).size).toBe(4096 + 24);
    const s = await OrtSession.create(model, { threads: 1 });
    const out = await s.run({ x: { type: 'float32', data: Float32Array.from([1, 0, 0, 2, -1, 1]), dims: [3, 2] } });
    // rows: [1,0] -> [1,2,3]; [0,2] -> [8,10,12]; [-1,1] -> [3,3,3]; plus b
    expect(Array.from(out.y.data as Float32Array)).toEqual([1.5, 1.5, 3, 8.5, 9.5, 12, 3.5, 2.5, 3]);
    expect(out.y.dims).toEqual([3, 3]);
    expect(Array.from(out.top.data as BigInt64Array, Number).slice(0, 4)).toEqual([2, 0, 2, 1]);
    await s.close();
  });
});

describe('OrtSession', () => {
  it(`falls back from 'cuda' to 'cpu' with a warning naming the reason when cuda cannot load`, async () => {
    const warnings: string[] = [];
    const s = await OrtSession.create(writeTinyModel('fallback'), { provider: 'cuda', threads: 1, warn: (m) => warnings.push(m) });
    expect(s.info.requestedProvider).toBe('cuda');
    if (s.info.provider === 'cuda') {
      // Only where the CUDA provider libraries are installed and a GPU is present.
      expect(warnings).toEqual([]);
      return;
    }
    expect(s.info.provider).toBe('cpu');
    expect(s.info.fallbackReason).toBeTruthy();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/'cuda' could not be used \(.+\); falling back to 'cpu'/);
    const out = await s.run({ x: { type: 'float32', data: Float32Array.from([1, 1]), dims: [1, 2] } });
    expect(Array.from(out.y.data as Float32Array)).toEqual([5.5, 6.5, 9]);
    await s.close();
  });

  it('uses cpu without warnings when cpu is asked for', async () => {
    const warnings: string[] = [];
    const s = await OrtSession.create(writeTinyModel('cpu'), { provider: 'cpu', warn: (m) => warnings.push(m) });
    expect([s.info.provider, warnings]).toEqual(['cpu', []]);
    await s.close();
  });

  it('rejects missing, extra, mistyped and misshaped inputs with what the graph expects', async () => {
    const s = await OrtSession.create(writeTinyModel('validate'), { threads: 1 });
    const x = { type: 'float32' as const, data: new Float32Array(2), dims: [1, 2] };
    await expect(s.run({})).rejects.toThrow(/missing input 'x'.*the graph expects x: float32 \[n,2\]/);
    await expect(s.run({ x, z: x })).rejects.toThrow(/unexpected input 'z'/);
    await expect(s.run({ x: { type: 'int64', data: new BigInt64Array(2), dims: [1, 2] } })).rejects.toThrow(/input 'x' has dtype int64, expected float32.*got x: int64 \[1,2\]/);
    await expect(s.run({ x: { ...x, dims: [2, 1] } })).rejects.toThrow(/input 'x' has dims \[2,1\], expected \[n,2\]/);
    await expect(s.run({ x: { ...x, dims: [2, 2] } })).rejects.toThrow(/has 2 elements for dims \[2,2\]/);
    const err = await s.run({}).catch((e) => e);
    expect(isToxScopeError(err) && err.kind).toBe('validation');
    await s.close();
  });

  it('reports a corrupt model file as a format error naming the file', async () => {
    const bad = join(dir, 'corrupt.onnx');
    writeFileSync(bad, readFileSync(writeTinyModel('tocorrupt')).subarray(0, 40));
    const err = await OrtSession.create(bad).catch((e) => e);
    expect(isToxScopeError(err) && err.kind).toBe('format');
    expect(err.message).toContain('corrupt.onnx');
  });

  it('refuses a thread count that is not a positive integer', async () => {
    await expect(OrtSession.create(writeTinyModel('threads'), { threads: 0 })).rejects.toThrow(/threads must be a positive integer/);
  });
});
