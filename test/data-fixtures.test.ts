import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readLabeled, summarize } from '../src/data/labeled.js';
import { SOURCES, sampleFixtures } from '../scripts/sample-fixtures.js';

const FIXTURES = 'fixtures/data';
const SHARED = '../shared/data';

describe('fixtures/data: the licensed training sample', () => {
  const texts = readLabeled(join(FIXTURES, 'train'));

  it('parses and is balanced per source file and language', () => {
    expect(texts.length).toBeGreaterThan(3000);
    const perFileLang = new Map<string, { toxic: number; n: number }>();
    for (const t of texts) {
      const key = `${t.file}/${t.lang}`;
      const c = perFileLang.get(key) ?? { toxic: 0, n: 0 };
      c.n++;
      c.toxic += t.label;
      perFileLang.set(key, c);
    }
    for (const [key, c] of perFileLang) expect(c.toxic * 2, key).toBe(c.n);
    expect(Object.keys(summarize(texts))).toEqual(['ar', 'de', 'en', 'fr', 'ko', 'pt', 'tr', 'zh']);
  });

  it('carries the licence and attribution of every source it holds', () => {
    const attribution = readFileSync(join(FIXTURES, 'ATTRIBUTION.md'), 'utf8');
    for (const file of readdirSync(join(FIXTURES, 'train'))) {
      const source = SOURCES[file];
      expect(source, file).toBeDefined();
      expect(attribution).toContain(`train/${file}`);
      for (const l of source.licenceFiles) expect(existsSync(join(FIXTURES, 'licenses', l)), l).toBe(true);
    }
  });

  it.skipIf(!existsSync(SHARED))('is reproduced byte for byte by scripts/sample-fixtures.ts from ../shared/data', () => {
    const out = mkdtempSync(join(tmpdir(), 'toxscope-fixtures-'));
    try {
      sampleFixtures({ from: SHARED, out, perClass: 500, seed: 4 });
      for (const file of readdirSync(join(FIXTURES, 'train'))) {
        expect(readFileSync(join(out, 'train', file), 'utf8'), file).toBe(readFileSync(join(FIXTURES, 'train', file), 'utf8'));
      }
      expect(readFileSync(join(out, 'ATTRIBUTION.md'), 'utf8')).toBe(readFileSync(join(FIXTURES, 'ATTRIBUTION.md'), 'utf8'));
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
