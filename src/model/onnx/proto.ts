/**
 * A minimal protobuf encoder for the subset of onnx.proto (proto2) the graph builder emits.
 *
 * Wire format: every field is `tag = (field << 3) | wireType` as a varint, then
 *   wire 0 (varint)            int32/int64/enum values (negatives as 10-byte two's complement)
 *   wire 2 (length-delimited)  strings, bytes, nested messages: varint length, then the bytes
 *   wire 5 (fixed32)           float
 * Repeated scalars are written unpacked (the proto2 default); parsers accept both forms.
 * Field numbers are those of onnx/onnx onnx/onnx.proto.
 */

/** TensorProto.DataType values. */
export const TensorDataType = {
  FLOAT: 1, UINT8: 2, INT8: 3, UINT16: 4, INT16: 5, INT32: 6, INT64: 7, BOOL: 9, FLOAT16: 10, DOUBLE: 11, UINT32: 12, UINT64: 13,
  BFLOAT16: 16, UINT4: 21, INT4: 22,
} as const;
export type TensorDataType = (typeof TensorDataType)[keyof typeof TensorDataType];

/** Bytes of one protobuf message under construction. */
class Writer {
  private chunks: Uint8Array[] = [];
  private scratch: number[] = [];

  private flushScratch(): void {
    if (this.scratch.length) {
      this.chunks.push(Uint8Array.from(this.scratch));
      this.scratch = [];
    }
  }

  private varint(value: number | bigint): void {
    let v = BigInt.asUintN(64, BigInt(value));
    while (v >= 0x80n) {
      this.scratch.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.scratch.push(Number(v));
  }

  private tag(field: number, wire: 0 | 2 | 5): void {
    this.varint((field << 3) | wire);
  }

  int(field: number, value: number | bigint): this {
    this.tag(field, 0);
    this.varint(value);
    return this;
  }

  float(field: number, value: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.scratch.push(...b);
    return this;
  }

  bytes(field: number, data: Uint8Array): this {
    this.tag(field, 2);
    this.varint(data.length);
    this.flushScratch();
    this.chunks.push(data);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }

  message(field: number, m: Writer): this {
    return this.bytes(field, m.finish());
  }

  finish(): Uint8Array {
    this.flushScratch();
    const n = this.chunks.reduce((a, c) => a + c.length, 0);
    const out = new Uint8Array(n);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    this.chunks = [out];
    return out;
  }
}

// ---------------------------------------------------------------- message shapes

export type AttrValue =
  | { kind: 'int'; value: number }
  | { kind: 'float'; value: number }
  | { kind: 'string'; value: string }
  | { kind: 'ints'; value: number[] }
  | { kind: 'floats'; value: number[] }
  | { kind: 'tensor'; value: TensorSpec }
  /** a subgraph (the body of Loop / Scan, the branches of If) */
  | { kind: 'graph'; value: GraphSpec };

export interface TensorSpec {
  name: string;
  dataType: TensorDataType;
  dims: number[];
  /** inline little-endian data, or... */
  raw?: Uint8Array;
  /** ...a range of an external data file, relative to the model file */
  external?: { location: string; offset: number; length: number };
}

export interface NodeSpec {
  opType: string;
  inputs: string[]; //  '' for an omitted optional input
  outputs: string[];
  name: string;
  domain?: string;
  attributes: Record<string, AttrValue>;
}

export interface ValueInfoSpec {
  name: string;
  elemType: TensorDataType;
  /** a number for a fixed dimension, a string for a symbolic one; null: rank unknown (subgraph values) */
  dims: (number | string)[] | null;
}

export interface GraphSpec {
  name: string;
  nodes: NodeSpec[];
  initializers: TensorSpec[];
  inputs: ValueInfoSpec[];
  outputs: ValueInfoSpec[];
}

export interface ModelSpec {
  irVersion: number;
  opsets: { domain: string; version: number }[];
  producer: string;
  graph: GraphSpec;
  metadata?: Record<string, string>;
}

// ---------------------------------------------------------------- encoders (field numbers from onnx.proto)

const ATTR_TYPE = { float: 1, int: 2, string: 3, tensor: 4, graph: 5, floats: 6, ints: 7 } as const;

function encodeTensor(t: TensorSpec): Writer {
  const w = new Writer();
  for (const d of t.dims) w.int(1, d); //                       dims
  w.int(2, t.dataType); //                                       data_type
  w.string(8, t.name); //                                        name
  if (t.raw) w.bytes(9, t.raw); //                               raw_data
  if (t.external) {
    const entry = (k: string, v: string) => new Writer().string(1, k).string(2, v);
    w.message(13, entry('location', t.external.location)); //    external_data
    w.message(13, entry('offset', String(t.external.offset)));
    w.message(13, entry('length', String(t.external.length)));
    w.int(14, 1); //                                             data_location = EXTERNAL
  }
  return w;
}

function encodeAttribute(name: string, a: AttrValue): Writer {
  const w = new Writer().string(1, name);
  switch (a.kind) {
    case 'float': w.float(2, a.value); break;
    case 'int': w.int(3, a.value); break;
    case 'string': w.string(4, a.value); break;
    case 'tensor': w.message(5, encodeTensor(a.value)); break;
    case 'graph': w.message(6, encodeGraph(a.value)); break;
    case 'floats': for (const v of a.value) w.float(7, v); break;
    case 'ints': for (const v of a.value) w.int(8, v); break;
  }
  return w.int(20, ATTR_TYPE[a.kind]); //                        type
}

function encodeNode(n: NodeSpec): Writer {
  const w = new Writer();
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(3, n.name).string(4, n.opType);
  for (const [k, v] of Object.entries(n.attributes)) w.message(5, encodeAttribute(k, v));
  if (n.domain) w.string(7, n.domain);
  return w;
}

function encodeValueInfo(v: ValueInfoSpec): Writer {
  const tensorType = new Writer().int(1, v.elemType);
  if (v.dims) {
    const shape = new Writer();
    for (const d of v.dims) shape.message(1, typeof d === 'number' ? new Writer().int(1, d) : new Writer().string(2, d));
    tensorType.message(2, shape);
  }
  const type = new Writer().message(1, tensorType);
  return new Writer().string(1, v.name).message(2, type);
}

function encodeGraph(graph: GraphSpec): Writer {
  const g = new Writer();
  for (const n of graph.nodes) g.message(1, encodeNode(n));
  g.string(2, graph.name);
  for (const t of graph.initializers) g.message(5, encodeTensor(t));
  for (const i of graph.inputs) g.message(11, encodeValueInfo(i));
  for (const o of graph.outputs) g.message(12, encodeValueInfo(o));
  return g;
}

/** Serialise a ModelProto. */
export function encodeModel(m: ModelSpec): Uint8Array {
  const w = new Writer().int(1, m.irVersion).string(2, m.producer).message(7, encodeGraph(m.graph));
  for (const o of m.opsets) w.message(8, new Writer().string(1, o.domain).int(2, o.version));
  for (const [k, v] of Object.entries(m.metadata ?? {})) w.message(14, new Writer().string(1, k).string(2, v));
  return w.finish();
}
