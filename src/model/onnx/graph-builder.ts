/**
 * A small helper for building ONNX graphs: named values, nodes with typed attributes, small inline
 * constants, and large weights streamed to an external-data file (so no model hits protobuf's 2 GB limit).
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { basename } from 'node:path';
import { AttrValue, GraphSpec, ModelSpec, NodeSpec, TensorDataType, TensorSpec, ValueInfoSpec, encodeModel } from './proto.js';

export { TensorDataType } from './proto.js';
export type { GraphSpec } from './proto.js';

/** Bits per element of every data type the builder writes (int4/uint4 pack two per byte). */
const ELEMENT_BITS: Record<TensorDataType, number> = {
  [TensorDataType.FLOAT]: 32, [TensorDataType.UINT8]: 8, [TensorDataType.INT8]: 8, [TensorDataType.UINT16]: 16,
  [TensorDataType.INT16]: 16, [TensorDataType.INT32]: 32, [TensorDataType.INT64]: 64, [TensorDataType.BOOL]: 8,
  [TensorDataType.FLOAT16]: 16, [TensorDataType.DOUBLE]: 64, [TensorDataType.UINT32]: 32, [TensorDataType.UINT64]: 64,
  [TensorDataType.BFLOAT16]: 16, [TensorDataType.UINT4]: 4, [TensorDataType.INT4]: 4,
};

/** Bytes a tensor of `dims` takes in raw (little-endian, packed) form. */
export function tensorByteLength(dataType: TensorDataType, dims: readonly number[]): number {
  const bits = ELEMENT_BITS[dataType];
  if (bits === undefined) throw new Error(`no element size known for ONNX data type ${dataType}`);
  const numel = dims.reduce((a, b) => a * b, 1);
  return Math.ceil((numel * bits) / 8);
}

/**
 * Opset versions imported for each domain a node uses: ai.onnx 23 (RMSNormalization, RotaryEmbedding, Attention;
 * onnxruntime 1.30 accepts up to 26) and com.microsoft 1 (MoE, LinearAttention, CausalConvWithState, quantized
 * MatMuls). A domain not listed here must be given to encode() explicitly.
 */
export const DEFAULT_OPSETS: Record<string, number> = { '': 23, 'com.microsoft': 1 };

/** Attribute constructors: ONNX needs to know an int from a float. */
export const attr = {
  int: (value: number): AttrValue => ({ kind: 'int', value }),
  float: (value: number): AttrValue => ({ kind: 'float', value }),
  string: (value: string): AttrValue => ({ kind: 'string', value }),
  ints: (value: number[]): AttrValue => ({ kind: 'ints', value }),
  floats: (value: number[]): AttrValue => ({ kind: 'floats', value }),
  /** a subgraph for Loop / Scan / If, from GraphBuilder.subgraph(...).toGraph(name) */
  graph: (value: GraphSpec): AttrValue => ({ kind: 'graph', value }),
};

const ALIGN = 4096; // page-aligned so onnxruntime may map tensors straight from the file

/**
 * Node's fs.writeSync takes at most 2^31 - 1 bytes per call: a tensor of 2 GiB or more (Qwen3.5-35B-A3B's float32
 * experts of one layer are exactly 2 GiB) is written in pieces of at most this many bytes.
 */
export const MAX_WRITE_BYTES = 1 << 30;

/** Appends tensors to one binary file at page-aligned (4096-byte) offsets and remembers where each one went. */
export class ExternalDataFile {
  readonly path: string;
  private fd: number | null;
  private offset = 0;

  private readonly chunkBytes: number;

  /** `chunkBytes`: the largest single write (tests use small ones to exercise the loop). */
  constructor(path: string, chunkBytes = MAX_WRITE_BYTES) {
    this.path = path;
    this.chunkBytes = chunkBytes;
    this.fd = openSync(path, 'w');
  }

  append(data: ArrayBufferView): { location: string; offset: number; length: number } {
    if (this.fd === null) throw new Error(`${this.path}: external data file already closed`);
    const pad = (ALIGN - (this.offset % ALIGN)) % ALIGN;
    if (pad) writeSync(this.fd, new Uint8Array(pad), 0, pad, this.offset);
    this.offset += pad;
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    let done = 0;
    while (done < bytes.length) done += writeSync(this.fd, bytes, done, Math.min(bytes.length - done, this.chunkBytes), this.offset + done);
    const at = { location: basename(this.path), offset: this.offset, length: bytes.length };
    this.offset += bytes.length;
    return at;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

export class GraphBuilder {
  private readonly nodes: NodeSpec[] = [];
  private readonly initializers: TensorSpec[] = [];
  private readonly inputs: ValueInfoSpec[] = [];
  private readonly outputs: ValueInfoSpec[] = [];
  private readonly names: Set<string>;
  private counter = 0;
  private readonly weights: ExternalDataFile | null;

  /** `weights`: where initializers added with `weight()` go; without it they are stored inline. */
  constructor(weights: ExternalDataFile | null = null, sharedNames?: Set<string>) {
    this.weights = weights;
    this.names = sharedNames ?? new Set<string>();
  }

  /** A fresh value name derived from `hint`. */
  fresh(hint: string): string {
    let name = hint;
    while (this.names.has(name)) name = `${hint}_${++this.counter}`;
    this.names.add(name);
    return name;
  }

  input(name: string, elemType: TensorDataType, dims: (number | string)[] | null): string {
    this.names.add(name);
    this.inputs.push({ name, elemType, dims });
    return name;
  }

  output(name: string, elemType: TensorDataType, dims: (number | string)[] | null): void {
    this.outputs.push({ name, elemType, dims });
  }

  /** Add a node; returns its output names (named `outputs` when given, fresh names from the op otherwise). */
  node(opType: string, inputs: string[], opts: { outputs?: number | string[]; attrs?: Record<string, AttrValue>; domain?: string; name?: string } = {}): string[] {
    const outs = Array.isArray(opts.outputs)
      ? opts.outputs.map((o) => (o === '' ? '' : this.fresh(o)))
      : Array.from({ length: opts.outputs ?? 1 }, () => this.fresh(`${opts.name ?? opType}_out`));
    this.nodes.push({ opType, inputs, outputs: outs, name: this.fresh(`${opts.name ?? opType}`), domain: opts.domain, attributes: opts.attrs ?? {} });
    return outs;
  }

  /** One-output node. */
  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, opts: { domain?: string; name?: string } = {}): string {
    return this.node(opType, inputs, { attrs, ...opts })[0];
  }

  /** A small constant stored inline in the model. */
  constant(hint: string, dataType: TensorDataType, dims: number[], data: ArrayBufferView): string {
    const name = this.fresh(hint);
    this.initializers.push({ name, dataType, dims, raw: new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)) });
    return name;
  }

  constI64(hint: string, values: number[], dims: number[] = [values.length]): string {
    return this.constant(hint, TensorDataType.INT64, dims, BigInt64Array.from(values.map(BigInt)));
  }

  constF32(hint: string, values: ArrayLike<number>, dims: number[] = [values.length]): string {
    return this.constant(hint, TensorDataType.FLOAT, dims, Float32Array.from(values));
  }

  /** A large initializer: written to the external-data file when there is one. */
  weight(name: string, dataType: TensorDataType, dims: number[], data: ArrayBufferView): string {
    const need = tensorByteLength(dataType, dims);
    if (need !== data.byteLength) throw new Error(`weight '${name}': ${data.byteLength} bytes for dims [${dims}] (needs ${need})`);
    if (!this.weights) return this.constant(name, dataType, dims, data);
    const n = this.fresh(name);
    this.initializers.push({ name: n, dataType, dims, external: this.weights.append(data) });
    return n;
  }

  /**
   * A builder for a subgraph (Loop / Scan body, If branch): it may read this graph's values by name, its
   * constants are stored inline, and its names never collide with this graph's.
   */
  subgraph(): GraphBuilder {
    return new GraphBuilder(null, this.names);
  }

  /** This builder's nodes and values as a GraphProto (for attr.graph). */
  toGraph(name: string): GraphSpec {
    return { name, nodes: this.nodes, initializers: this.initializers, inputs: this.inputs, outputs: this.outputs };
  }

  /**
   * Serialise as a ModelProto (IR 10). Opset imports are collected from the domains the nodes use (subgraphs
   * included), at DEFAULT_OPSETS versions; `opsets` adds domains or overrides versions.
   */
  encode(opsets: { domain: string; version: number }[] = [], metadata?: Record<string, string>, name = 'graph'): Uint8Array {
    const graph = this.toGraph(name);
    const versions = new Map<string, number>([['', DEFAULT_OPSETS['']]]);
    for (const domain of usedDomains(graph)) {
      const v = DEFAULT_OPSETS[domain];
      if (v !== undefined) versions.set(domain, v);
    }
    for (const o of opsets) versions.set(o.domain, o.version);
    for (const domain of usedDomains(graph))
      if (!versions.has(domain)) throw new Error(`graph uses domain '${domain}' with no known opset version: pass it to encode()`);
    const spec: ModelSpec = {
      irVersion: 10,
      opsets: [...versions].map(([domain, version]) => ({ domain, version })),
      producer: 'toxscope',
      graph,
      metadata,
    };
    return encodeModel(spec);
  }
}

/** Every node domain in a graph and its subgraphs ('' is ai.onnx). */
function usedDomains(graph: GraphSpec, into = new Set<string>()): Set<string> {
  for (const n of graph.nodes) {
    into.add(n.domain ?? '');
    for (const a of Object.values(n.attributes)) if (a.kind === 'graph') usedDomains(a.value, into);
  }
  return into;
}
