/**
 * ClassifierHost's lifecycle races, on real tiny bundles (engines on worker threads): a reload that a
 * shutdown overtakes, and a reload asked for before the first bundle is warm.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { LoadedBundle } from '../src/service/classifier-host.js';
import { buildTestApp, loadTinyBundle, writeTinyBundle } from './helpers/app.js';

describe('ClassifierHost', () => {
  it('closes the bundle of a reload that a shutdown overtook, and fails that reload', async () => {
    const t = await buildTestApp();
    try {
      const dir = writeTinyBundle(join(t.dir, 'v2'), 'tiny-v2', t.headJson);
      let loaded: LoadedBundle | undefined;
      const swapping = t.host.swap(async () => (loaded = await loadTinyBundle(dir, t.config)));
      const drained = t.host.drain(); // while the new engine is still opening
      await expect(swapping).rejects.toMatchObject({ kind: 'unavailable', message: expect.stringMatching(/shutting down during the reload/) });
      await drained;
      expect(t.host.peek()?.info.version).toBe('tiny-v1');
      // the new bundle's classifier was closed: it takes no more work
      await expect(loaded!.classifier.classify({ texts: ['after shutdown'] })).rejects.toMatchObject({ kind: 'unavailable' });
    } finally {
      await t.close();
    }
  });

  it('refuses a reload before the first bundle is ready, without loading anything', async () => {
    const t = await buildTestApp({ notReady: true });
    try {
      let calls = 0;
      const load = async (): Promise<LoadedBundle> => {
        calls++;
        throw new Error('not reached');
      };
      await expect(t.host.swap(load)).rejects.toMatchObject({ kind: 'unavailable', message: expect.stringMatching(/first bundle is still loading/) });
      expect(calls).toBe(0);
      expect(t.host.readiness).toBe('starting');
    } finally {
      await t.close();
    }
  });
});
