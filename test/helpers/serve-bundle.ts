/**
 * A real bundle for tests that start the whole service: trained by trainBundle on 60 toxic and 60 non-toxic
 * English and German posts of the licensed fixture sample, on the golden tiny checkpoint + SAELens SAE at layer 2,
 * with short windows (64 tokens, overlap 8) recorded in its manifest.
 */
import { join } from 'node:path';
import { trainBundle } from '../../src/bundle/train-bundle.js';
import { readLabeled } from '../../src/data/labeled.js';
import { goldenCheckpointDir, goldensDir, repoRoot } from './goldens.js';

export async function trainServeBundle(out: string, name: string, cacheDir: string): Promise<void> {
  const texts = readLabeled(join(repoRoot, 'fixtures', 'data', 'train')).filter((t) => t.lang === 'en' || t.lang === 'de');
  const sample = [0, 1].flatMap((label) => ['en', 'de'].flatMap((lang) => texts.filter((t) => t.label === label && t.lang === lang).slice(0, 60)));
  await trainBundle({
    data: sample,
    modelDir: goldenCheckpointDir,
    saePath: join(goldensDir, 'sae-saelens-L2'),
    layer: 2,
    out,
    name,
    seed: 3,
    cacheDir,
    threads: 1,
    windowTokens: 64,
    windowOverlap: 8,
  });
}
