/**
 * The write journal: appends reach the file before append() returns, one fdatasync covers every append of its
 * group-commit window, segments are released only once everything in them is committed, and a reopen finds
 * everything not released, in order.
 */
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Journal, type QueueEntry } from '../src/db/journal.js';
import { predictionRow } from './helpers/db.js';

const entry = (seq: number): QueueEntry => ({ seq, kind: 'prediction', row: predictionRow() });
const files = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.jsonl')).sort();
const bytesOnDisk = (dir: string) => files(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0);

describe('write journal', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'toxscope-journal-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const open = (options: { syncMs?: number; segmentBytes?: number } = {}) => {
    const seen: QueueEntry[] = [];
    const j = Journal.open({ dir, ...options }, (e) => seen.push(e), () => undefined);
    return { j, seen };
  };

  it('has every appended byte in the file when append returns, and fsyncs a whole window of appends at once', async () => {
    const { j } = open({ syncMs: 40 });
    for (let seq = 1; seq <= 50; seq++) {
      j.append([entry(seq)]);
      expect(bytesOnDisk(dir)).toBe(j.bytes); // written, not buffered in the process
    }
    expect(j.syncs).toBe(0); // the group-commit window is still open
    await vi.waitFor(() => expect(j.syncs).toBe(1), { timeout: 5_000, interval: 5 }); // one fsync for 50 appends
    j.close();
  });

  it('with syncMs 0 fsyncs inside every append, before it returns', () => {
    const { j } = open({ syncMs: 0 });
    j.append([entry(1)]);
    j.append([entry(2), entry(3)]);
    expect(j.syncs).toBe(2);
    j.close();
  });

  it('rotates segments and releases only those whose entries are all committed; a reopen finds the rest in order', () => {
    const { j } = open({ segmentBytes: 1_000 });
    for (let seq = 1; seq <= 30; seq++) j.append([entry(seq)]);
    const segments = files(dir).length;
    expect(segments).toBeGreaterThan(3);
    j.release(0, false);
    expect(files(dir)).toHaveLength(segments); // nothing committed: nothing released
    j.release(12, false);
    expect(files(dir).length).toBeLessThan(segments);
    j.close();
    const { j: again, seen } = open({ segmentBytes: 1_000 });
    const seqs = seen.map((e) => e.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(seqs.at(-1)).toBe(30);
    expect(seqs[0]).toBeLessThanOrEqual(13); // every uncommitted entry is still there
    expect(new Set(seqs).size).toBe(seqs.length);
    // committed and idle: the journal is empty, and leaves no file behind once closed
    again.release(30, true);
    expect(again.bytes).toBe(0);
    again.close();
    expect(files(dir)).toEqual([]);
  });

  it('reads across segments from any position, stopping at the end of what was appended', () => {
    const { j } = open({ segmentBytes: 700 });
    const at = j.append([entry(1)]);
    for (let seq = 2; seq <= 9; seq++) j.append([entry(seq)]);
    const first = j.read(at, 4, () => undefined);
    expect(first.entries.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
    const rest = j.read(first.next, 100, () => undefined);
    expect(rest.entries.map((e) => e.seq)).toEqual([5, 6, 7, 8, 9]);
    expect(j.atEnd(rest.next)).toBe(true);
    expect(j.atEnd(first.next)).toBe(false);
    j.close();
  });
});
