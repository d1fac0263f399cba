/**
 * Issue #10 (database parts): threshold overrides live in the database, so a bundle loaded while it is away
 * (a start, a crash restart, a reload during an outage) used to serve the bundle's own thresholds. The last
 * overrides the database answered are now kept in the data directory (src/db/overrides-cache.ts) and served
 * while it is away; the database stays the source of truth whenever it answers.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb, type DbHandle } from '../src/db/client.js';
import { isTransientDbError } from '../src/db/db-error.js';
import { OverridesCache } from '../src/db/overrides-cache.js';
import { createRepository, type NewThresholdChangeInput, type Repository } from '../src/db/repository.js';

const change = (language: string, newThreshold: number, more: Partial<NewThresholdChangeInput> = {}): NewThresholdChangeInput => ({
  actor: 'alice',
  language,
  oldThreshold: null,
  newThreshold,
  bundleVersion: 'v1',
  ...more,
});

describe('threshold override cache', () => {
  let dir: string;
  let up: DbHandle;
  let repo: Repository;
  let away: Repository; // a repository whose database is closed: every call fails with a transient error
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'toxscope-overrides-cache-'));
    up = await createDb({ dataDir: 'memory://' });
    repo = createRepository(up.db);
    const closed = await createDb({ dataDir: 'memory://' });
    await closed.close();
    away = createRepository(closed.db);
  }, 240_000);
  afterAll(async () => {
    await up?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("serves the last overrides the database answered while it is away, also to the next process (the file)", async () => {
    const path = join(dir, 'a', 'threshold-overrides.json');
    await repo.recordThresholdChanges([change('en', 0.31), change('de', 0.6, { removed: true })]);
    const online = new OverridesCache({ source: repo, path });
    expect(await online.thresholdOverrides('v1')).toEqual({ en: 0.31, de: null });

    const awayError = await away.thresholdOverrides('v1').catch((e: unknown) => e);
    expect(isTransientDbError(awayError)).toBe(true);
    const fallbacks: { version: string; cachedAt: string }[] = [];
    const restarted = new OverridesCache({ source: away, path, onFallback: (f) => fallbacks.push(f) });
    expect(await restarted.thresholdOverrides('v1')).toEqual({ en: 0.31, de: null });
    expect(fallbacks).toEqual([{ version: 'v1', cachedAt: expect.any(String), error: expect.anything() }]);
    expect(Date.parse(fallbacks[0].cachedAt)).not.toBeNaN();
  });

  it("keeps every attribute's overrides of a version, not only toxicity's", async () => {
    const path = join(dir, 'f', 'threshold-overrides.json');
    await repo.recordThresholdChanges([change('en', 0.7, { bundleVersion: 'v3', attribute: 'insult' }), change('pooled', 0.45, { bundleVersion: 'v3' })]);
    expect(await new OverridesCache({ source: repo, path }).attributeOverrides('v3')).toEqual({ insult: { en: 0.7 }, toxicity: { pooled: 0.45 } });
    const restarted = new OverridesCache({ source: away, path });
    expect(await restarted.attributeOverrides('v3')).toEqual({ insult: { en: 0.7 }, toxicity: { pooled: 0.45 } });
    expect(await restarted.thresholdOverrides('v3')).toEqual({ pooled: 0.45 });
    restarted.recorded([change('de', 0.2, { bundleVersion: 'v3', attribute: 'insult' })]);
    expect(restarted.cached('v3')).toEqual({ insult: { en: 0.7, de: 0.2 }, toxicity: { pooled: 0.45 } });
  });

  it('keeps the database the source of truth: every answer replaces what was remembered, removals included', async () => {
    const path = join(dir, 'b', 'threshold-overrides.json');
    await repo.recordThresholdChange(change('fr', 0.2, { bundleVersion: 'v2' }));
    const cache = new OverridesCache({ source: repo, path });
    expect(await cache.thresholdOverrides('v2')).toEqual({ fr: 0.2 });
    await repo.recordThresholdChange(change('fr', 0.45, { bundleVersion: 'v2', oldThreshold: 0.2 }));
    await repo.recordThresholdChange(change('pooled', 0.5, { bundleVersion: 'v2' }));
    expect(await cache.thresholdOverrides('v2')).toEqual({ fr: 0.45, pooled: 0.5 });
    expect(await new OverridesCache({ source: away, path }).thresholdOverrides('v2')).toEqual({ fr: 0.45, pooled: 0.5 });
    // refresh (what a recorded change triggers) rereads the database
    await repo.recordThresholdChange(change('fr', 0.2, { bundleVersion: 'v2', oldThreshold: 0.45, removed: true }));
    await cache.refresh('v2');
    expect(new OverridesCache({ source: away, path }).cached('v2')).toEqual({ toxicity: { fr: null, pooled: 0.5 } });
  });

  it('keeps a change the database just committed at once, so an outage right after it cannot bring back the older ones', async () => {
    const path = join(dir, 'e', 'threshold-overrides.json');
    const before = new OverridesCache({ source: repo, path });
    await before.thresholdOverrides('v1'); // { en: 0.31, de: null } from the first test
    // the database goes away right after the change was committed: the re-read in the background fails
    const cache = new OverridesCache({ source: away, path });
    cache.recorded([change('en', 0.4), change('fr', 0.5, { removed: true }), change('it', 0.2, { bundleVersion: null })]);
    expect(await new OverridesCache({ source: away, path }).thresholdOverrides('v1')).toEqual({ en: 0.4, de: null, fr: null });
  });

  it('passes the error through for a version it never saw, and for a torn or foreign file', async () => {
    const path = join(dir, 'c', 'threshold-overrides.json');
    await new OverridesCache({ source: repo, path }).thresholdOverrides('v1');
    const e = await new OverridesCache({ source: away, path }).thresholdOverrides('never-answered').catch((x: unknown) => x);
    expect(isTransientDbError(e)).toBe(true);
    expect((e as Error).message).toMatch(/closed/);

    writeFileSync(path, readFileSync(path, 'utf8').slice(0, 20)); // what a crash could leave without the atomic rename
    await expect(new OverridesCache({ source: away, path }).thresholdOverrides('v1')).rejects.toThrow(/closed/);
    writeFileSync(path, JSON.stringify({ format: 'toxscope-threshold-overrides-v2', versions: { v1: { at: 'x', overrides: { toxicity: { en: 'high' } } } } }));
    await expect(new OverridesCache({ source: away, path }).thresholdOverrides('v1')).rejects.toThrow(/closed/);
  });

  it('writes the file atomically: a new content replaces the old whole, no temporary file is left', async () => {
    const sub = join(dir, 'd');
    const path = join(sub, 'threshold-overrides.json');
    const cache = new OverridesCache({ source: repo, path });
    await cache.thresholdOverrides('v1');
    await cache.thresholdOverrides('v2');
    const file = JSON.parse(readFileSync(path, 'utf8'));
    expect(Object.keys(file.versions)).toEqual(['v1', 'v2']);
    expect(readdirSync(sub)).toEqual(['threshold-overrides.json']);
  });
});
