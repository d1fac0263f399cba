/**
 * The write queue's append-only overflow file: one JSON entry per line, each with a sequence number, read back
 * in order from a byte offset. Appends are synchronous (the file is only written while the database is slow or
 * away) and reach the OS page cache at once: a process crash loses nothing acknowledged; fsync runs on close.
 */
import { closeSync, existsSync, fsyncSync, ftruncateSync, fstatSync, mkdirSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { ToxScopeError } from '../errors.js';
import type { FeedbackItem } from './repository.js';
import type { NewPrediction } from './schema.js';

export type QueueEntry =
  | { seq: number; kind: 'prediction'; row: NewPrediction }
  | { seq: number; kind: 'feedback'; item: FeedbackItem & { at: Date } };

const NEWLINE = 0x0a;
const CHUNK = 256 * 1024;

export function encodeEntries(entries: readonly QueueEntry[]): Buffer {
  return Buffer.from(entries.map((e) => JSON.stringify(e) + '\n').join(''), 'utf8');
}

/** Parses one line; dates come back as Date. Throws a format error naming the file and offset. */
export function decodeEntry(line: string, path: string, offset: number): QueueEntry {
  let e: QueueEntry;
  try {
    e = JSON.parse(line) as QueueEntry;
  } catch (cause) {
    throw new ToxScopeError('format', `spill file ${path}: line at byte ${offset} is not JSON`, { path, offset }, { cause });
  }
  if (typeof e?.seq !== 'number' || (e.kind !== 'prediction' && e.kind !== 'feedback')) {
    throw new ToxScopeError('format', `spill file ${path}: line at byte ${offset} is not a queue entry`, { path, offset });
  }
  if (e.kind === 'prediction') e.row.createdAt = new Date(e.row.createdAt as unknown as string);
  else e.item.at = new Date(e.item.at as unknown as string);
  return e;
}

export class SpillFile {
  /** Bytes before readOffset have been written to the database. */
  readOffset = 0;
  /** Entries after readOffset. */
  pending = 0;

  private constructor(
    readonly path: string,
    private fd: number,
    public writeOffset: number,
  ) {}

  static create(path: string): SpillFile {
    mkdirSync(dirname(path), { recursive: true });
    return new SpillFile(path, openSync(path, 'w+'), 0);
  }

  /**
   * Opens a spill file left by an earlier run, if any, and scans it: every complete line is handed to onEntry
   * (a malformed one to onBadLine, then skipped); a torn last line (a crash mid-append, never acknowledged) is
   * cut off.
   */
  static recover(
    path: string,
    onEntry: (e: QueueEntry) => void,
    onBadLine: (e: unknown) => void,
  ): SpillFile | undefined {
    if (!existsSync(path)) return undefined;
    const fd = openSync(path, 'r+');
    const file = new SpillFile(path, fd, fstatSync(fd).size);
    let offset = 0;
    for (;;) {
      const lines = file.readLines(offset, Number.POSITIVE_INFINITY, onBadLine);
      for (const e of lines.entries) onEntry(e);
      file.pending += lines.lines;
      if (lines.end === offset) break;
      offset = lines.end;
    }
    if (offset < file.writeOffset) {
      ftruncateSync(fd, offset);
      file.writeOffset = offset;
    }
    if (file.writeOffset === 0) {
      file.remove();
      return undefined;
    }
    return file;
  }

  append(entries: readonly QueueEntry[]): void {
    const buf = encodeEntries(entries);
    let done = 0;
    while (done < buf.length) done += writeSync(this.fd, buf, done, buf.length - done, this.writeOffset + done);
    this.writeOffset += buf.length;
    this.pending += entries.length;
  }

  /** Up to max entries from readOffset, and the byte offset just past them. */
  readBatch(max: number, onBadLine: (e: unknown) => void): { entries: QueueEntry[]; end: number; lines: number } {
    return this.readLines(this.readOffset, max, onBadLine);
  }

  /** Marks everything before `end` (holding `lines` entries) as written. */
  consume(end: number, lines: number): void {
    this.readOffset = end;
    this.pending -= lines;
  }

  get drained(): boolean {
    return this.readOffset >= this.writeOffset;
  }

  /**
   * Replaces the file with `first` followed by the unread rest of this file (shutdown with rows still in memory:
   * they are older than everything spilled). Written to a temporary file, fsynced and renamed over.
   */
  rewriteWithPrefix(first: readonly QueueEntry[]): void {
    const tmp = `${this.path}.tmp`;
    const out = openSync(tmp, 'w');
    try {
      const head = encodeEntries(first);
      let pos = 0;
      while (pos < head.length) pos += writeSync(out, head, pos, head.length - pos, pos);
      const buf = Buffer.allocUnsafe(CHUNK);
      for (let at = this.readOffset; at < this.writeOffset; ) {
        const n = readSync(this.fd, buf, 0, Math.min(CHUNK, this.writeOffset - at), at);
        if (n === 0) break;
        let w = 0;
        while (w < n) w += writeSync(out, buf, w, n - w, pos + w);
        pos += n;
        at += n;
      }
      fsyncSync(out);
    } finally {
      closeSync(out);
    }
    closeSync(this.fd);
    renameSync(tmp, this.path);
    this.fd = -1;
  }

  sync(): void {
    if (this.fd >= 0) fsyncSync(this.fd);
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }

  /** Closes and deletes the file (everything in it has been written). */
  remove(): void {
    this.close();
    unlinkSync(this.path);
  }

  private readLines(from: number, max: number, onBadLine: (e: unknown) => void) {
    const entries: QueueEntry[] = [];
    let lines = 0;
    let offset = from;
    let size = CHUNK;
    while (lines < max && offset < this.writeOffset) {
      const buf = Buffer.allocUnsafe(Math.min(size, this.writeOffset - offset));
      const n = readSync(this.fd, buf, 0, buf.length, offset);
      let pos = 0;
      let found = false;
      while (lines < max) {
        const nl = buf.indexOf(NEWLINE, pos);
        if (nl < 0 || nl >= n) break;
        found = true;
        try {
          entries.push(decodeEntry(buf.toString('utf8', pos, nl), this.path, offset + pos));
        } catch (e) {
          onBadLine(e);
        }
        lines += 1;
        pos = nl + 1;
      }
      if (!found) {
        if (n < buf.length || offset + n >= this.writeOffset) break; // torn last line
        size *= 2; // a line longer than the chunk
        continue;
      }
      offset += pos;
    }
    return { entries, end: offset, lines };
  }
}
