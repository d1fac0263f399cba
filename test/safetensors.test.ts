import { closeSync, ftruncateSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bf16ToF32 } from '../src/model/dtypes.js';
import { SafetensorsFile, writeSafetensors } from '../src/model/safetensors.js';

const dir = mkdtempSync(join(tmpdir(), 'toxscope-st-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = (name = 'f') => join(dir, `${name}-${n++}.safetensors`);

/** A file from a raw header (object or literal text) and raw data bytes, bypassing the writer's checks. */
function rawFile(header: unknown, data: Uint8Array = new Uint8Array(0)): string {
  const path = fresh('raw');
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([len, json, data]));
  return path;
}

describe('safetensors writer and reader', () => {
  it('round-trips every dtype bit for bit', () => {
    const f32 = Float32Array.from([0, -1.5, 3.25e-8, 65504, -Infinity]);
    const f16 = Uint16Array.from([0x0000, 0x3c00, 0xc000, 0x7bff, 0x0001]); // 0, 1, -2, 65504, smallest subnormal
    const bf16 = Uint16Array.from([0x3f80, 0xbf80, 0x4049, 0x0001, 0x7f80]); // 1, -1, 3.140625, a subnormal, +inf
    const i64 = BigInt64Array.from([0n, -1n, 2n ** 62n, -(2n ** 53n) - 1n]);
    const i32 = Int32Array.from([0, -2147483648, 2147483647, 7, -7, 1]);
    const u8 = Uint8Array.from([0, 1, 127, 255]);
    const bool = Uint8Array.from([1, 0, 0, 1, 1, 0]);
    const path = fresh();
    writeSafetensors(path, {
      f32: { dtype: 'F32', shape: [5], data: f32 },
      f16: { dtype: 'F16', shape: [5], data: f16 },
      bf16: { dtype: 'BF16', shape: [5, 1], data: bf16 },
      i64: { dtype: 'I64', shape: [2, 2], data: i64 },
      i32: { dtype: 'I32', shape: [2, 3], data: i32 },
      u8: { dtype: 'U8', shape: [4], data: u8 },
      bool: { dtype: 'BOOL', shape: [3, 2], data: bool },
      empty: { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
    }, { format: 'pt' });
    const st = SafetensorsFile.open(path);
    try {
      expect([...st.tensors.keys()]).toEqual(['f32', 'f16', 'bf16', 'i64', 'i32', 'u8', 'bool', 'empty']);
      expect(st.metadata).toEqual({ format: 'pt' });
      expect(st.dataStart % 8).toBe(0); // header padded to 8 bytes like the reference writer
      expect(st.info('bf16')).toMatchObject({ dtype: 'BF16', shape: [5, 1], byteLength: 10 });
      expect(Array.from(st.readF32('f32'))).toEqual(Array.from(f32));
      expect(Array.from(st.readF32('f16'))).toEqual([0, 1, -2, 65504, 2 ** -24]);
      expect(Array.from(st.readF32('bf16'))).toEqual(Array.from(bf16ToF32(bf16)));
      expect(new Uint16Array(new Float32Array(st.readF32('bf16')).buffer).filter((_, i) => i % 2 === 1)).toEqual(bf16); // high halves are the bf16 bits
      expect(st.readTyped('i64')).toEqual(i64);
      expect(st.readTyped('i32')).toEqual(i32);
      expect(st.readTyped('u8')).toEqual(u8);
      expect(st.readTyped('bool')).toEqual(bool);
      expect(st.readF32('empty')).toHaveLength(0);
      expect(new Uint8Array(st.readBytes('i32'))).toEqual(new Uint8Array(i32.buffer));
    } finally {
      st.close();
    }
  });

  it('skips __metadata__ wherever it sits in the header', () => {
    const path = rawFile({ a: { dtype: 'U8', shape: [2], data_offsets: [0, 2] }, __metadata__: { note: 'x' } }, Uint8Array.from([4, 5]));
    const st = SafetensorsFile.open(path);
    expect([...st.tensors.keys()]).toEqual(['a']);
    expect(st.metadata).toEqual({ note: 'x' });
    expect(st.readTyped('a')).toEqual(Uint8Array.from([4, 5]));
    st.close();
  });

  it('reads a tensor that starts past 4 GiB with a positional read (sparse file)', () => {
    const FAR = 2 ** 32 + 24; // bytes of a U8 filler tensor that is never read
    const header = {
      filler: { dtype: 'U8', shape: [FAR], data_offsets: [0, FAR] },
      far: { dtype: 'F32', shape: [3], data_offsets: [FAR, FAR + 12] },
    };
    const json = Buffer.from(JSON.stringify(header));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    const path = fresh('sparse');
    const fd = openSync(path, 'w');
    try {
      writeSync(fd, len, 0, 8, 0);
      writeSync(fd, json, 0, json.length, 8);
      ftruncateSync(fd, 8 + json.length + FAR + 12); // a hole: costs no disk
      const far = new Uint8Array(Float32Array.from([1.5, -2, 7]).buffer);
      writeSync(fd, far, 0, far.length, 8 + json.length + FAR);
    } finally {
      closeSync(fd);
    }
    expect(statSync(path).size).toBeGreaterThan(2 ** 32);
    const st = SafetensorsFile.open(path);
    try {
      expect(st.info('far').offset).toBe(8 + json.length + FAR);
      expect(Array.from(st.readF32('far'))).toEqual([1.5, -2, 7]);
    } finally {
      st.close();
    }
  });
});

describe('safetensors failures name the file and the tensor', () => {
  const ok = { w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] } };

  it('a file too short for the header length', () => {
    const path = fresh('short');
    writeFileSync(path, Buffer.from([1, 2, 3]));
    expect(() => SafetensorsFile.open(path)).toThrow(`${path}: truncated safetensors file (3 bytes, no header length)`);
  });

  it('a header cut short', () => {
    const path = rawFile(ok, new Uint8Array(16));
    const full = statSync(path).size;
    writeFileSync(path, readFileSync(path).subarray(0, 20));
    expect(full).toBeGreaterThan(20);
    expect(() => SafetensorsFile.open(path)).toThrow(new RegExp(`${path}: truncated safetensors file: header of \\d+ bytes but file is 20 bytes`));
  });

  it('data cut short', () => {
    const path = rawFile({ ...ok, v: { dtype: 'F32', shape: [3], data_offsets: [16, 28] } }, new Uint8Array(20));
    expect(() => SafetensorsFile.open(path)).toThrow(`${path}: tensor 'v': data ends at byte 28 of the data section but only 20 bytes are present (truncated file?)`);
  });

  it('an implausible header length (corrupted first bytes)', () => {
    const path = fresh('len');
    const b = Buffer.alloc(64);
    b.writeBigUInt64LE(2n ** 40n);
    writeFileSync(path, b);
    expect(() => SafetensorsFile.open(path)).toThrow(`${path}: header length ${2 ** 40} is more than the 100000000-byte limit (corrupted file?)`);
  });

  it('a corrupted header that is not JSON', () => {
    const path = rawFile('{"w": {"dtype": "F32", "shape": [2, 2], "data_off', new Uint8Array(16));
    expect(() => SafetensorsFile.open(path)).toThrow(new RegExp(`${path}: safetensors header: not valid JSON`));
  });

  it('a header that is JSON but not an object', () => {
    expect(() => SafetensorsFile.open(rawFile('[1, 2]'))).toThrow(/safetensors header is not a JSON object/);
  });

  it('shape x dtype that disagrees with the byte range', () => {
    const path = rawFile({ w: { dtype: 'BF16', shape: [2, 3], data_offsets: [0, 16] } }, new Uint8Array(16));
    expect(() => SafetensorsFile.open(path)).toThrow(`${path}: tensor 'w': shape [2,3] x BF16 needs 12 bytes but data_offsets span 16`);
  });

  it('overlapping byte ranges', () => {
    const path = rawFile({ ...ok, v: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }, new Uint8Array(16));
    expect(() => SafetensorsFile.open(path)).toThrow(`${path}: tensors 'w' and 'v' overlap in the data section`);
  });

  it('an unsupported dtype, a bad shape, bad offsets', () => {
    const path = rawFile({ w: { dtype: 'F8_E4M3', shape: [4], data_offsets: [0, 4] } }, new Uint8Array(4));
    expect(() => SafetensorsFile.open(path)).toThrow(`${path}: tensor 'w': unsupported dtype 'F8_E4M3'`);
    expect(() => SafetensorsFile.open(rawFile({ w: { dtype: 'U8', shape: [-1], data_offsets: [0, 1] } }, new Uint8Array(1)))).toThrow(/tensor 'w': shape \[-1\] is not a list of at most 8 non-negative integers/);
    expect(() => SafetensorsFile.open(rawFile({ w: { dtype: 'U8', shape: [1], data_offsets: [1, 0] } }, new Uint8Array(1)))).toThrow(/tensor 'w': data_offsets \[1,0\] are not \[begin, end\]/);
  });

  it('a missing tensor, a missing file, a closed file', () => {
    const path = rawFile(ok, new Uint8Array(16));
    const st = SafetensorsFile.open(path);
    expect(() => st.readF32('nope')).toThrow(`${path}: no tensor 'nope'`);
    st.close();
    expect(() => st.readF32('w')).toThrow(`${path}: file is closed`);
    expect(() => SafetensorsFile.open(join(dir, 'absent.safetensors'))).toThrow(new RegExp(`${join(dir, 'absent.safetensors')}: cannot open safetensors file`));
  });

  it('integer tensors refused as floats', () => {
    const st = SafetensorsFile.open(rawFile({ ids: { dtype: 'I32', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)));
    expect(() => st.readF32('ids')).toThrow(/tensor 'ids': dtype I32 is not a floating type/);
    st.close();
  });

  it('the writer refuses data whose size disagrees with shape x dtype', () => {
    const path = fresh('bad-write');
    expect(() => writeSafetensors(path, { w: { dtype: 'F32', shape: [3], data: new Float32Array(2) } })).toThrow(`writing ${path}: tensor 'w' has 8 bytes, shape x dtype needs 12`);
  });
});
