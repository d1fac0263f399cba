/**
 * readBundleOffThread: the bundle reader's worker is a fence. A bundle that needs more heap than the reader
 * is allowed dies with its worker, as a 'format' refusal, and the process (the service) goes on.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readBundleOffThread } from '../src/bundle/read-off-thread.js';

const dir = mkdtempSync(join(tmpdir(), 'toxscope-bundle-reader-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A manifest the schema accepts, over a head.json of the given bytes. */
function bundleWithHead(headBytes: Buffer): string {
  const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
  writeFileSync(join(dir, 'head.json'), headBytes);
  const manifest = {
    format: 'toxscope-bundle', format_version: 1, name: 'heap-test', version: 'v1', created_at: new Date().toISOString(),
    synthetic_backbone: true,
    model: { path: 'model', sha256: sha('m'), num_layers: 1, hidden_size: 8 },
    sae: { path: 'sae', format: 'saelens', sha256: sha('s'), d_sae: 16, d_model: 8 },
    layer: 0, k: 1,
    head: { path: 'head.json', sha256: sha(headBytes) },
    training: { data_digest: 'x', files: [], seed: 1, n_train: 0, n_calibration: 0, languages: [] },
    metrics: {}, baseline_f1: {},
  };
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest));
  return dir;
}

describe('the bundle reader on its worker thread', () => {
  it('refuses a head.json that needs more heap than the reader may use, and the process goes on', async () => {
    // 6 M numbers in 24 MB of JSON: well inside the head's size budget, past a 64 MB heap once parsed
    const head = Buffer.from(`{"meta": [${'1.5,'.repeat(6_000_000)}1]}`);
    const refusal = readBundleOffThread(bundleWithHead(head), { maxHeapMb: 64 });
    await expect(refusal).rejects.toMatchObject({ kind: 'format', message: expect.stringMatching(/reading the bundle needed more than its 64 MB heap: refused/) });
  }, 60_000);

  it('passes the reader\'s own refusals through with their kind', async () => {
    const refusal = readBundleOffThread(bundleWithHead(Buffer.from('{"format": "not a head"}')));
    await expect(refusal).rejects.toMatchObject({ kind: 'format', message: expect.stringMatching(/head\.json: .*format/) });
  }, 60_000);

  it('refuses a bundle it cannot read within its deadline', async () => {
    const refusal = readBundleOffThread(bundleWithHead(Buffer.from('{}')), { timeoutMs: 1 });
    await expect(refusal).rejects.toMatchObject({ kind: 'format', message: expect.stringMatching(/reading the bundle took longer than 0 s: refused/) });
  }, 60_000);
});
