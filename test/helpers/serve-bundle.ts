/**
 * A real bundle for tests that start the whole service: trained by trainBundle on 60 toxic and 60 non-toxic
 * English and German posts of the licensed fixture sample, on the golden tiny checkpoint + SAELens SAE at layer 2,
 * with short windows (64 tokens, overlap 8) recorded in its manifest.
 */
import { join } from 'node:path';
import { fixtureAttributes } from '../../src/bundle/demo/fixture-attributes.js';
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

/**
 * A bundle with several attributes (toxicity, identity_attack, insult, ...: those the fixture's sources annotate,
 * src/bundle/demo/fixture-attributes.ts), as test/bundle-attributes.test.ts trains it: German and English posts
 * of GermEval 2018 and Davidson et al.
 */
export async function trainAttributesBundle(out: string, name: string, cacheDir: string): Promise<void> {
  const rows = readLabeled(join(repoRoot, 'fixtures', 'data', 'train'));
  const take = (source: string, label: number, n: number) => rows.filter((r) => r.source === source && r.label === label).slice(0, n);
  const sample = [...take('germeval2018', 1, 160), ...take('germeval2018', 0, 100), ...take('davidson', 1, 200), ...take('davidson', 0, 60)];
  await trainBundle({
    data: sample,
    deriveAttributes: fixtureAttributes,
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
