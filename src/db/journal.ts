/**
 * The write queue's journal: every accepted row is appended here (one JSON entry per line, with its sequence
 * number) before the caller is answered, and read back from here after a crash or when it no longer fits in
 * memory. Segment files `journal-<n>.jsonl` in one directory, replayed in segment then line order.
 *
 *   append:   write(2) before append() returns (survives kill -9: the bytes are in the OS page cache), then
 *             fdatasync within `syncMs` (group commit: one fsync covers every append of its window; survives
 *             power loss except the last window). `syncMs: 0` fsyncs inside append(), before the answer.
 *   release:  a segment is deleted (or, the active one, truncated) only when every entry in it is committed
 *             to the database; a crash between the commit and the release replays those rows, and the
 *             idempotent inserts keep them stored once.
 */
import {
  closeSync,
  existsSync,
  renameSync,
  fdatasync,
  fdatasyncSync,
  fsyncSync,
  ftruncateSync,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { ToxScopeError } from '../errors.js';
import type { FeedbackItem } from './repository.js';
import type { NewPrediction } from './schema.js';

export type QueueEntry =
  | { seq: number; kind: 'prediction'; row: NewPrediction }
  | { seq: number; kind: 'feedback'; item: FeedbackItem & { at: Date } };

/** A place in the journal: a segment and a byte offset in it. */
export interface JournalPosition {
  segment: number;
  offset: number;
}

export interface JournalOptions {
  dir: string;
  /** Group-commit window: appended bytes are fdatasync'd at most this long after their append (0: in append). */
  syncMs?: number;
  /** A segment past this size is sealed (fsynced) and a new one started (default 64 MiB). */
  segmentBytes?: number;
  /** A background fdatasync failed (the next append retries it). */
  onSyncError?: (error: unknown) => void;
}

interface Segment {
  id: number;
  path: string;
  fd: number;
  size: number;
  /** Highest sequence number in the segment (0: empty). */
  lastSeq: number;
}

const NEWLINE = 0x0a;
const CHUNK = 256 * 1024;
const SEGMENT_NAME = /^journal-(\d{12})\.jsonl$/;

export function encodeEntries(entries: readonly QueueEntry[]): Buffer {
  return Buffer.from(entries.map((e) => JSON.stringify(e) + '\n').join(''), 'utf8');
}

/** Parses one line; dates come back as Date. Throws a format error naming the file and offset (never the line). */
export function decodeEntry(line: string, path: string, offset: number): QueueEntry {
  let e: QueueEntry;
  try {
    e = JSON.parse(line) as QueueEntry;
  } catch (cause) {
    throw new ToxScopeError('format', `journal ${path}: line at byte ${offset} is not JSON`, { path, offset }, { cause });
  }
  const ok =
    typeof e?.seq === 'number' &&
    ((e.kind === 'prediction' && typeof e.row === 'object' && e.row !== null) || (e.kind === 'feedback' && typeof e.item === 'object' && e.item !== null));
  if (!ok) throw new ToxScopeError('format', `journal ${path}: line at byte ${offset} is not a queue entry`, { path, offset });
  if (e.kind === 'prediction') e.row.createdAt = new Date(e.row.createdAt as unknown as string);
  else e.item.at = new Date(e.item.at as unknown as string);
  return e;
}

export class Journal {
  readonly dir: string;
  private readonly syncMs: number;
  private readonly segmentBytes: number;
  private readonly onSyncError: (error: unknown) => void;
  /** Oldest first; the last one is the active segment (appended to). */
  private segments: Segment[] = [];
  private nextId = 1;
  private syncTimer: NodeJS.Timeout | undefined;
  private syncing = false;
  private dirty = false;
  private closed = false;
  /** fdatasync calls completed (for tests and metrics). */
  syncs = 0;

  private constructor(options: JournalOptions) {
    this.dir = options.dir;
    this.syncMs = options.syncMs ?? 50;
    this.segmentBytes = options.segmentBytes ?? 64 << 20;
    this.onSyncError = options.onSyncError ?? (() => undefined);
    if (!(this.syncMs >= 0)) throw new ToxScopeError('validation', `journal syncMs must be >= 0; got ${this.syncMs}`);
  }

  /**
   * Opens the journal directory, creating it if needed, and scans what an earlier run left: every complete
   * line goes to onEntry in order (a malformed one to onBadLine, then skipped); a torn last line (a crash in
   * the middle of an append, never answered) is cut off.
   */
  static open(options: JournalOptions, onEntry: (e: QueueEntry) => void, onBadLine: (e: unknown) => void): Journal {
    const journal = new Journal(options);
    mkdirSync(journal.dir, { recursive: true });
    const ids = readdirSync(journal.dir)
      .map((name) => SEGMENT_NAME.exec(name))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
    for (const id of ids) {
      const path = journal.segmentPath(id);
      const fd = openSync(path, 'r+');
      const segment: Segment = { id, path, fd, size: fstatSync(fd).size, lastSeq: 0 };
      let offset = 0;
      for (;;) {
        const read = journal.readLines(segment, offset, Number.POSITIVE_INFINITY, onBadLine);
        for (const e of read.entries) {
          onEntry(e);
          segment.lastSeq = Math.max(segment.lastSeq, e.seq);
        }
        if (read.end === offset) break;
        offset = read.end;
      }
      if (offset < segment.size) {
        ftruncateSync(fd, offset); // the torn tail of an append that never completed
        segment.size = offset;
      }
      journal.segments.push(segment);
      journal.nextId = id + 1;
    }
    // Empty leftovers are not worth keeping open: drop all but the last (appends continue there).
    for (const s of journal.segments.slice(0, -1)) if (s.size === 0) journal.removeSegment(s);
    return journal;
  }

  /**
   * Moves the single spill file of earlier versions (same line format: every line one entry with its sequence
   * number) into `dir` as its oldest segment, so that an upgrade replays what it held.
   */
  static adoptLegacySpill(file: string, dir: string): void {
    if (!existsSync(file)) return;
    mkdirSync(dir, { recursive: true });
    const target = join(dir, `journal-${String(0).padStart(12, '0')}.jsonl`);
    if (!existsSync(target)) renameSync(file, target);
  }

  /** Bytes in all segments. */
  get bytes(): number {
    let n = 0;
    for (const s of this.segments) n += s.size;
    return n;
  }

  /** Where the next append goes. */
  get end(): JournalPosition {
    const active = this.active;
    return active ? { segment: active.id, offset: active.size } : { segment: this.nextId, offset: 0 };
  }

  /** The oldest position still held. */
  get start(): JournalPosition {
    const first = this.segments[0];
    return first ? { segment: first.id, offset: 0 } : this.end;
  }

  /**
   * Appends entries in one write. Returns the position of the first. On a failed write nothing of the call
   * stays in the file (it is cut back), so the caller can refuse the whole call.
   */
  append(entries: readonly QueueEntry[]): JournalPosition {
    this.assertOpen();
    let active = this.active;
    if (!active || active.size >= this.segmentBytes) active = this.startSegment();
    const at = { segment: active.id, offset: active.size };
    const buf = encodeEntries(entries);
    let done = 0;
    try {
      while (done < buf.length) done += writeSync(active.fd, buf, done, buf.length - done, active.size + done);
      if (this.syncMs === 0) fdatasyncSync(active.fd);
    } catch (e) {
      try {
        ftruncateSync(active.fd, active.size);
      } catch {
        // the file is unusable; the caller refuses the call and the torn tail is cut at the next open
      }
      throw e;
    }
    active.size += buf.length;
    for (const e of entries) active.lastSeq = Math.max(active.lastSeq, e.seq);
    if (this.syncMs > 0) {
      this.dirty = true;
      this.scheduleSync();
    } else {
      this.syncs += 1;
    }
    return at;
  }

  /** Up to `max` entries from `from`, moving on to later segments, and the position just past them. */
  read(from: JournalPosition, max: number, onBadLine: (e: unknown) => void): { entries: QueueEntry[]; next: JournalPosition } {
    const entries: QueueEntry[] = [];
    let pos = from;
    while (entries.length < max) {
      const index = this.segments.findIndex((s) => s.id === pos.segment);
      if (index < 0) {
        const later = this.segments.find((s) => s.id > pos.segment);
        if (!later) break;
        pos = { segment: later.id, offset: 0 };
        continue;
      }
      const segment = this.segments[index];
      const read = this.readLines(segment, pos.offset, max - entries.length, onBadLine);
      entries.push(...read.entries);
      pos = { segment: segment.id, offset: read.end };
      if (read.end < segment.size) break; // max reached
      const next = this.segments[index + 1];
      if (!next) break;
      pos = { segment: next.id, offset: 0 };
    }
    return { entries, next: pos };
  }

  /** Whether `pos` is at the end of everything appended. */
  atEnd(pos: JournalPosition): boolean {
    const end = this.end;
    if (pos.segment === end.segment) return pos.offset >= end.offset;
    // past the last segment's end, or in a segment with nothing after it
    return !this.segments.some((s) => s.id > pos.segment || (s.id === pos.segment && s.size > pos.offset));
  }

  /**
   * Every entry with seq <= committedSeq is in the database: delete the segments holding only such entries.
   * With `idle` (nothing accepted is waiting anywhere) the active segment is truncated too.
   */
  release(committedSeq: number, idle: boolean): void {
    for (const s of this.segments.slice(0, -1)) if (s.lastSeq <= committedSeq) this.removeSegment(s);
    const active = this.active;
    if (idle && active && active.size > 0 && active.lastSeq <= committedSeq) {
      ftruncateSync(active.fd, 0);
      active.size = 0;
    }
  }

  /** fdatasync the active segment now. */
  sync(): void {
    const active = this.active;
    if (!active || !this.dirty) return;
    this.dirty = false;
    fdatasyncSync(active.fd);
    this.syncs += 1;
  }

  /** Syncs and closes every segment; what is in them stays for the next open. */
  close(): void {
    if (this.closed) return;
    if (this.syncTimer) clearTimeout(this.syncTimer);
    this.syncTimer = undefined;
    try {
      this.sync();
    } finally {
      this.closed = true;
      for (const s of this.segments) closeSync(s.fd);
      // an empty journal leaves no files behind
      for (const s of this.segments) if (s.size === 0) unlinkSync(s.path);
      this.segments = [];
    }
  }

  // --- internals -------------------------------------------------------------------------------------

  private get active(): Segment | undefined {
    return this.segments[this.segments.length - 1];
  }

  private assertOpen(): void {
    if (this.closed) throw new ToxScopeError('unavailable', 'the journal is closed');
  }

  private segmentPath(id: number): string {
    return join(this.dir, `journal-${String(id).padStart(12, '0')}.jsonl`);
  }

  /** Seals the active segment (fsynced; kept for reading until released) and starts a new one. */
  private startSegment(): Segment {
    const previous = this.active;
    if (previous && this.dirty) this.sync();
    const id = this.nextId++;
    const path = this.segmentPath(id);
    const fd = openSync(path, 'w+');
    const dirFd = openSync(this.dir, 'r');
    try {
      fsyncSync(dirFd); // the new file's name is durable before anything in it is answered
    } finally {
      closeSync(dirFd);
    }
    const segment: Segment = { id, path, fd, size: 0, lastSeq: 0 };
    this.segments.push(segment);
    return segment;
  }

  private removeSegment(s: Segment): void {
    closeSync(s.fd);
    unlinkSync(s.path);
    this.segments = this.segments.filter((x) => x !== s);
  }

  private scheduleSync(): void {
    if (this.syncTimer || this.syncing || this.closed) return;
    this.syncTimer = setTimeout(() => {
      this.syncTimer = undefined;
      const active = this.active;
      if (!active || !this.dirty || this.closed) return;
      this.dirty = false;
      this.syncing = true;
      const fd = active.fd;
      fdatasync(fd, (error) => {
        this.syncing = false;
        if (error && !this.closed && this.active?.fd === fd) {
          this.dirty = true;
          this.onSyncError(error);
        } else if (!error) this.syncs += 1;
        if (this.dirty) this.scheduleSync();
      });
    }, this.syncMs);
    this.syncTimer.unref();
  }

  private readLines(segment: Segment, from: number, max: number, onBadLine: (e: unknown) => void) {
    const entries: QueueEntry[] = [];
    let lines = 0;
    let offset = from;
    let size = CHUNK;
    while (lines < max && offset < segment.size) {
      const buf = Buffer.allocUnsafe(Math.min(size, segment.size - offset));
      const n = readSync(segment.fd, buf, 0, buf.length, offset);
      let pos = 0;
      let found = false;
      while (lines < max) {
        const nl = buf.indexOf(NEWLINE, pos);
        if (nl < 0 || nl >= n) break;
        found = true;
        try {
          entries.push(decodeEntry(buf.toString('utf8', pos, nl), segment.path, offset + pos));
        } catch (e) {
          onBadLine(e);
        }
        lines += 1;
        pos = nl + 1;
      }
      if (!found) {
        if (n < buf.length || offset + n >= segment.size) break; // torn last line
        size *= 2; // a line longer than the chunk
        continue;
      }
      offset += pos;
    }
    return { entries, end: offset, lines };
  }
}
