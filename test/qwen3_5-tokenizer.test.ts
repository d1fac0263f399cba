/**
 * A checkpoint's own tokenizer: Qwen3.5 has its own vocabulary (248,320 tokens), so a Qwen3.5 checkpoint is
 * tokenized with the tokenizer.json it ships, and refused without one rather than tokenized with Qwen3's ids.
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadTokenizer, packagedTokenizerPath } from '../src/engine/tokenizer.js';
import { goldenCheckpointDir, goldensDir } from './helpers/goldens.js';
import { tinyQwen35Checkpoint, writeSmallQwenTokenizer } from './helpers/tiny-qwen35.js';

const tmp = mkdtempSync(join(tmpdir(), 'toxscope-qwen35-tok-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('checkpoint tokenizers', () => {
  it('refuses a Qwen3.5 checkpoint without tokenizer.json, saying why and what to copy', async () => {
    const dir = join(goldensDir, 'qwen3.5', 'qwen3.5-tiny'); // vocab 2048, no tokenizer.json
    await expect(loadTokenizer(dir)).rejects.toThrow(/has no tokenizer\.json, and its vocabulary \(2048 tokens\) is not Qwen3's \(151936\).*Copy tokenizer\.json and tokenizer_config\.json/);
  });

  it('uses the tokenizer.json a Qwen3.5 checkpoint ships, whose ids fit its embedding', async () => {
    const ck = tinyQwen35Checkpoint({ vocabSize: 512, tokenizer: true, dir: mkdirIn('ship') });
    const tok = await loadTokenizer(ck.dir);
    expect(tok.path).toBe(join(ck.dir, 'tokenizer.json'));
    expect(tok.padId).toBe(400);
    expect(tok.maxId).toBe(402);
    const ids = tok.encode('Hello world, ça va? 你好');
    expect(Math.max(...ids)).toBeLessThan(512);
    expect(tok.decode(ids)).toBe('Hello world, ça va? 你好');
    const text = 'Hello world, in the end';
    const { ids: ascii, offsets } = tok.encodeWithOffsets(text);
    expect(ascii.length, 'merges apply (fewer tokens than bytes)').toBeLessThan(text.length);
    expect(offsets.map(([a, b]) => text.slice(a, b)).join(''), 'offsets cover the text in order').toBe(text);
  });

  it('refuses a tokenizer.json whose ids run past the model\'s embedding', async () => {
    const dir = mkdirIn('too-big');
    tinyQwen35Checkpoint({ vocabSize: 256, dir });
    writeSmallQwenTokenizer(dir, 300); // ids up to 302
    await expect(loadTokenizer(dir)).rejects.toThrow(/gives ids up to 302, but the model in .* has 256 embedding rows/);
  });

  it('still uses the packaged Qwen3 tokenizer for a Qwen3 checkpoint without one (vocab 151936), and without any config', async () => {
    expect((await loadTokenizer(goldenCheckpointDir)).path).toBe(packagedTokenizerPath());
    const bare = mkdirIn('bare');
    copyFileSync(join(goldenCheckpointDir, 'config.json'), join(bare, 'config.json'));
    expect((await loadTokenizer(bare)).path).toBe(packagedTokenizerPath());
    expect((await loadTokenizer(mkdirIn('empty'))).path).toBe(packagedTokenizerPath());
  });
});

function mkdirIn(name: string): string {
  const dir = join(tmp, name);
  mkdirSync(dir);
  return dir;
}
