/**
 * A read-only zip archive, read lazily with positional reads (what `torch.save` files are).
 *
 * Layout: [local header | data (| data descriptor)]* central directory [zip64 EOCD, zip64 locator] EOCD.
 * The central directory is authoritative for sizes and offsets: torch.save writes local headers with
 * zero sizes and a data descriptor (flag bit 3). ZIP64 fields are honoured when a 32-bit field overflows.
 * STORED entries can be read by range (the big tensor storages); DEFLATE entries are inflated whole, and only
 * when their declared size is within the caller's budget: inflating stops at the declared size (a zip bomb
 * that lies about its size is cut off there), so an entry never costs more memory than its budget.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { crc32, inflateRawSync } from 'node:zlib';
import { formatError } from '../../errors.js';
import { ARTIFACT_LIMITS } from '../artifact-limits.js';

export interface ZipEntry {
  name: string;
  /** 0 = STORED, 8 = DEFLATE */
  method: number;
  crc32: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;
const EOCD_MIN = 22;
const MAX_COMMENT = 0xffff;
/** one readSync call moves at most this many bytes (Node refuses lengths of 2 GiB and more) */
const READ_CHUNK = 1 << 30;

export class ZipArchive {
  readonly path: string;
  readonly size: number;
  readonly entries: ReadonlyMap<string, ZipEntry>;
  private fd: number | null;
  /** absolute offset of each entry's data, resolved from its local header on first use */
  private readonly dataStart = new Map<string, number>();

  private constructor(path: string, fd: number, size: number, entries: Map<string, ZipEntry>) {
    this.path = path;
    this.fd = fd;
    this.size = size;
    this.entries = entries;
  }

  static open(path: string): ZipArchive {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      throw formatError(`${path}: cannot open zip archive (${(e as Error).message})`);
    }
    try {
      const size = fstatSync(fd).size;
      return new ZipArchive(path, fd, size, readCentralDirectory(path, fd, size));
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  entry(name: string): ZipEntry {
    const e = this.entries.get(name);
    if (!e) throw formatError(`${this.path}: zip has no entry '${name}'`);
    return e;
  }

  /** The whole entry, inflated if compressed, CRC-checked; refused unread when it declares more than `maxBytes`. */
  read(name: string, maxBytes: number): Buffer {
    const e = this.entry(name);
    const where = `${this.path}: entry '${name}'`;
    if (e.method !== 0 && e.method !== 8) throw formatError(`${where} uses compression method ${e.method} (only STORED and DEFLATE are supported)`);
    if (e.size > maxBytes) throw formatError(`${where} declares ${e.size} bytes, more than the ${maxBytes}-byte limit for it`);
    if (e.method === 0 && e.compressedSize !== e.size) throw formatError(`${where} is STORED but its stored size ${e.compressedSize} differs from its size ${e.size}`);
    // DEFLATE adds at most 5 bytes per 16 KiB block (stored blocks) and a few bytes more: anything larger is not this entry
    if (e.method === 8 && e.compressedSize > e.size + 5 * Math.ceil(e.size / 16384) + 64)
      throw formatError(`${where}: ${e.compressedSize} compressed bytes cannot inflate to the ${e.size} bytes it declares`);
    const raw = this.readRaw(e, 0, e.compressedSize);
    let data: Buffer;
    if (e.method === 0) data = raw;
    else {
      try {
        data = inflateRawSync(raw, { maxOutputLength: e.size + 1 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw formatError(`${where} inflates past the ${e.size} bytes it declares: refusing it (a zip bomb?)`);
        throw formatError(`${where}: cannot inflate (${(err as NodeJS.ErrnoException).code ?? 'corrupt DEFLATE data'})`);
      }
    }
    if (data.length !== e.size) throw formatError(`${this.path}: entry '${name}' is ${data.length} bytes once read, the central directory says ${e.size}`);
    if (crc32(data) !== e.crc32) throw formatError(`${this.path}: entry '${name}' fails its CRC-32 check (corrupted file?)`);
    return data;
  }

  /**
   * `length` bytes from byte `offset` of a STORED entry into `into` (at `intoOffset`), with positional reads:
   * nothing else of the entry is touched, so a 1 GiB storage costs only the bytes asked for.
   */
  readRangeInto(name: string, offset: number, length: number, into: Uint8Array, intoOffset = 0): void {
    const e = this.entry(name);
    if (e.method !== 0) throw formatError(`${this.path}: entry '${name}' is compressed (method ${e.method}): cannot read it by range`);
    if (offset < 0 || length < 0 || offset + length > e.size)
      throw formatError(`${this.path}: entry '${name}': bytes [${offset}, ${offset + length}) are outside its ${e.size} bytes`);
    this.readAt(this.dataOffset(e) + offset, length, into, intoOffset, `entry '${name}'`);
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  private readRaw(e: ZipEntry, offset: number, length: number): Buffer {
    const buf = Buffer.allocUnsafe(length);
    this.readAt(this.dataOffset(e) + offset, length, buf, 0, `entry '${e.name}'`);
    return buf;
  }

  private dataOffset(e: ZipEntry): number {
    const known = this.dataStart.get(e.name);
    if (known !== undefined) return known;
    const where = `${this.path}: entry '${e.name}'`;
    if (e.localHeaderOffset + 30 > this.size) throw formatError(`${where}: local header at byte ${e.localHeaderOffset} is past the end of the ${this.size}-byte file (truncated zip?)`);
    const h = Buffer.alloc(30);
    this.readAt(e.localHeaderOffset, 30, h, 0, `entry '${e.name}' local header`);
    if (h.readUInt32LE(0) !== SIG_LOCAL) throw formatError(`${where}: bad local header signature at byte ${e.localHeaderOffset}`);
    const start = e.localHeaderOffset + 30 + h.readUInt16LE(26) + h.readUInt16LE(28);
    if (start + e.compressedSize > this.size)
      throw formatError(`${where}: data [${start}, ${start + e.compressedSize}) runs past the end of the ${this.size}-byte file (truncated zip?)`);
    this.dataStart.set(e.name, start);
    return start;
  }

  private readAt(position: number, length: number, into: Uint8Array, intoOffset: number, what: string): void {
    if (this.fd === null) throw formatError(`${this.path}: archive is closed`);
    let done = 0;
    while (done < length) {
      const n = readSync(this.fd, into, intoOffset + done, Math.min(length - done, READ_CHUNK), position + done);
      if (n === 0) throw formatError(`${this.path}: ${what}: unexpected end of file at byte ${position + done} (truncated zip?)`);
      done += n;
    }
  }
}

function readCentralDirectory(path: string, fd: number, size: number): Map<string, ZipEntry> {
  if (size < EOCD_MIN) throw formatError(`${path}: not a zip archive (${size} bytes, too short for an end-of-central-directory record)`);
  // The EOCD record is the last 22 bytes plus a comment of up to 64 KiB: search backwards for its signature.
  const tailLen = Math.min(size, EOCD_MIN + MAX_COMMENT);
  const tail = readAbs(path, fd, size - tailLen, tailLen);
  let eocd = -1;
  for (let i = tailLen - EOCD_MIN; i >= 0; i--) {
    if (tail.readUInt32LE(i) === SIG_EOCD && i + EOCD_MIN + tail.readUInt16LE(i + 20) <= tailLen) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw formatError(`${path}: no end-of-central-directory record (not a zip archive, or truncated)`);
  let count = tail.readUInt16LE(eocd + 10);
  let cdSize = tail.readUInt32LE(eocd + 12);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  const eocdAbs = size - tailLen + eocd;
  // ZIP64: a locator (20 bytes) right before the EOCD points at the zip64 EOCD record with 64-bit fields.
  if (eocdAbs >= 20) {
    const loc = readAbs(path, fd, eocdAbs - 20, 20);
    if (loc.readUInt32LE(0) === SIG_ZIP64_LOCATOR) {
      const z64Offset = u64(loc, 8, path, 'zip64 locator offset');
      if (z64Offset + 56 > size) throw formatError(`${path}: zip64 end-of-central-directory record at byte ${z64Offset} is past the end of the file`);
      const z = readAbs(path, fd, z64Offset, 56);
      if (z.readUInt32LE(0) !== SIG_ZIP64_EOCD) throw formatError(`${path}: bad zip64 end-of-central-directory signature at byte ${z64Offset}`);
      count = u64(z, 32, path, 'entry count');
      cdSize = u64(z, 40, path, 'central directory size');
      cdOffset = u64(z, 48, path, 'central directory offset');
    }
  }
  if (cdOffset + cdSize > size) throw formatError(`${path}: central directory [${cdOffset}, ${cdOffset + cdSize}) runs past the end of the ${size}-byte file (truncated zip?)`);
  if (cdSize > ARTIFACT_LIMITS.zipDirectoryBytes) throw formatError(`${path}: central directory of ${cdSize} bytes is more than the ${ARTIFACT_LIMITS.zipDirectoryBytes}-byte limit`);
  if (count > cdSize / 46) throw formatError(`${path}: ${count} entries cannot fit a ${cdSize}-byte central directory`);
  const cd = readAbs(path, fd, cdOffset, cdSize);
  const entries = new Map<string, ZipEntry>();
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== SIG_CENTRAL) throw formatError(`${path}: bad central directory record ${i} at byte ${cdOffset + p}`);
    const flags = cd.readUInt16LE(p + 8);
    const nameLen = cd.readUInt16LE(p + 28);
    const extraLen = cd.readUInt16LE(p + 30);
    const commentLen = cd.readUInt16LE(p + 32);
    if (p + 46 + nameLen + extraLen + commentLen > cd.length) throw formatError(`${path}: central directory record ${i} overruns the directory`);
    const name = cd.toString(flags & 0x800 ? 'utf8' : 'latin1', p + 46, p + 46 + nameLen);
    const e: ZipEntry = {
      name,
      method: cd.readUInt16LE(p + 10),
      crc32: cd.readUInt32LE(p + 16),
      compressedSize: cd.readUInt32LE(p + 20),
      size: cd.readUInt32LE(p + 24),
      localHeaderOffset: cd.readUInt32LE(p + 42),
    };
    if (flags & 0x1) throw formatError(`${path}: entry '${name}' is encrypted`);
    applyZip64Extra(path, e, cd.subarray(p + 46 + nameLen, p + 46 + nameLen + extraLen));
    if (e.localHeaderOffset + 30 + e.compressedSize > cdOffset)
      throw formatError(`${path}: entry '${name}' (local header at ${e.localHeaderOffset}, ${e.compressedSize} bytes) runs past the start of the central directory at ${cdOffset}`);
    if (entries.has(name)) throw formatError(`${path}: duplicate zip entry '${name}'`);
    entries.set(name, e);
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

/** Zip64 extended information (header id 0x0001): 64-bit values for exactly the fields that read 0xFFFFFFFF, in order. */
function applyZip64Extra(path: string, e: ZipEntry, extra: Buffer): void {
  const fields = (['size', 'compressedSize', 'localHeaderOffset'] as const).filter((f) => e[f] === 0xffffffff);
  if (fields.length === 0) return;
  for (let q = 0; q + 4 <= extra.length; ) {
    const id = extra.readUInt16LE(q);
    const len = extra.readUInt16LE(q + 2);
    if (id === 0x0001) {
      if (len < 8 * fields.length || q + 4 + len > extra.length) throw formatError(`${path}: entry '${e.name}': zip64 extra field is too short`);
      fields.forEach((f, j) => (e[f] = u64(extra, q + 4 + 8 * j, path, `entry '${e.name}' ${f}`)));
      return;
    }
    q += 4 + len;
  }
  throw formatError(`${path}: entry '${e.name}': a size or offset overflows 32 bits but there is no zip64 extra field`);
}

function u64(b: Buffer, at: number, path: string, what: string): number {
  const v = b.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw formatError(`${path}: ${what} ${v} is implausibly large`);
  return Number(v);
}

function readAbs(path: string, fd: number, position: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, done, length - done, position + done);
    if (n === 0) throw formatError(`${path}: unexpected end of file at byte ${position + done} (truncated zip?)`);
    done += n;
  }
  return buf;
}
