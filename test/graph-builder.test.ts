/**
 * The ONNX graph builder's multi-family features: element sizes for every dtype it writes, opset imports
 * collected from the nodes (a com.microsoft node yields a model onnxruntime loads), and graph-valued
 * attributes (an If with two subgraph branches reading an outer value).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ExternalDataFile, GraphBuilder, TensorDataType, attr, tensorByteLength } from '../src/model/onnx/graph-builder.js';
import { OrtSession } from '../src/runtime/session.js';

const dir = mkdtempSync(join(tmpdir(), 'toxscope-graph-builder-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('ExternalDataFile', () => {
  it('writes a tensor larger than one write call allows in pieces, at page-aligned offsets, byte for byte', () => {
    const path = join(dir, 'chunked.bin');
    const ext = new ExternalDataFile(path, 7); // 7-byte writes stand in for the 1 GiB limit of fs.writeSync
    const a = Uint8Array.from({ length: 100 }, (_, i) => i);
    const b = Uint8Array.from({ length: 5000 }, (_, i) => (i * 31) % 251);
    const at = [ext.append(a), ext.append(b)];
    ext.close();
    expect(at.map((x) => [x.offset, x.length])).toEqual([[0, 100], [4096, 5000]]);
    const file = readFileSync(path);
    expect(Buffer.compare(file.subarray(0, 100), Buffer.from(a))).toBe(0);
    expect(Buffer.compare(file.subarray(4096, 9096), Buffer.from(b))).toBe(0);
  });
});

describe('GraphBuilder', () => {
  it('knows the byte size of every dtype it writes, int4 packed two per byte', () => {
    expect(tensorByteLength(TensorDataType.FLOAT, [2, 3])).toBe(24);
    expect(tensorByteLength(TensorDataType.BFLOAT16, [5])).toBe(10);
    expect(tensorByteLength(TensorDataType.INT8, [7])).toBe(7);
    expect(tensorByteLength(TensorDataType.UINT8, [7])).toBe(7);
    expect(tensorByteLength(TensorDataType.INT32, [3])).toBe(12);
    expect(tensorByteLength(TensorDataType.DOUBLE, [3])).toBe(24);
    expect(tensorByteLength(TensorDataType.UINT4, [5])).toBe(3);
    const g = new GraphBuilder();
    expect(() => g.weight('w', TensorDataType.INT8, [4], new Int8Array(3))).toThrow("weight 'w': 3 bytes for dims [4] (needs 4)");
    expect(g.weight('w8', TensorDataType.INT8, [4], new Int8Array(4))).toBe('w8');
  });

  it('imports com.microsoft when a node uses it, and onnxruntime runs the model', async () => {
    const g = new GraphBuilder();
    const x = g.input('x', TensorDataType.FLOAT, [1, 4]);
    g.node('Gelu', [x], { outputs: ['y'], domain: 'com.microsoft' });
    g.output('y', TensorDataType.FLOAT, [1, 4]);
    const path = join(dir, 'gelu.onnx');
    writeFileSync(path, g.encode());
    const s = await OrtSession.create(path, { threads: 1 });
    const xs = [-1, 0, 0.5, 2];
    const out = await s.run({ x: { type: 'float32', data: Float32Array.from(xs), dims: [1, 4] } });
    const erf = (v: number) => { // Abramowitz-Stegun 7.1.26, |error| < 1.5e-7
      const t = 1 / (1 + 0.3275911 * Math.abs(v));
      const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-v * v);
      return v >= 0 ? y : -y;
    };
    Array.from(out.y.data as Float32Array).forEach((y, i) => expect(y).toBeCloseTo(0.5 * xs[i] * (1 + erf(xs[i] / Math.SQRT2)), 5));
    await s.close();
  });

  it('refuses to encode a node domain it has no opset version for', () => {
    const g = new GraphBuilder();
    const x = g.input('x', TensorDataType.FLOAT, [1]);
    g.node('Custom', [x], { outputs: ['y'], domain: 'org.example' });
    g.output('y', TensorDataType.FLOAT, [1]);
    expect(() => g.encode()).toThrow("graph uses domain 'org.example' with no known opset version: pass it to encode()");
    expect(g.encode([{ domain: 'org.example', version: 1 }]).length).toBeGreaterThan(0);
  });

  it('writes graph-valued attributes: an If whose branches read an outer value', async () => {
    const g = new GraphBuilder();
    const x = g.input('x', TensorDataType.FLOAT, [3]);
    const cond = g.input('cond', TensorDataType.BOOL, []);
    const branch = (op: string) => {
      const b = g.subgraph();
      b.node(op, [x, b.constF32('two', [2], [])], { outputs: [`${op}_out`] });
      b.output(`${op}_out`, TensorDataType.FLOAT, null);
      return attr.graph(b.toGraph(`${op}_branch`));
    };
    g.node('If', [cond], { outputs: ['y'], attrs: { then_branch: branch('Mul'), else_branch: branch('Add') } });
    g.output('y', TensorDataType.FLOAT, [3]);
    const path = join(dir, 'if.onnx');
    writeFileSync(path, g.encode());
    const s = await OrtSession.create(path, { threads: 1 });
    const feeds = (c: boolean) => ({ x: { type: 'float32' as const, data: Float32Array.from([1, 2, 3]), dims: [3] }, cond: { type: 'bool' as const, data: Uint8Array.from([c ? 1 : 0]), dims: [] } });
    expect(Array.from((await s.run(feeds(true))).y.data as Float32Array)).toEqual([2, 4, 6]);
    expect(Array.from((await s.run(feeds(false))).y.data as Float32Array)).toEqual([3, 4, 5]);
    await s.close();
  });
});
