/**
 * `toxscope residual`: exit code 2 with a usage message on bad arguments, 1 on bad artifacts, and an output
 * file whose tensors match the engine's goldens.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../src/cli/main.js';
import { loadTokenizer } from '../src/engine/tokenizer.js';
import { SafetensorsFile } from '../src/model/safetensors.js';
import { goldenCheckpointDir, Goldens, readManifest, repoRoot } from './helpers/goldens.js';

const dir = mkdtempSync(join(tmpdir(), 'toxscope-cli-residual-'));
const cacheDir = join(dir, 'cache');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function cli(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '', stderr = '';
  const code = await main(argv, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
  return { code, stdout, stderr };
}

const base = (out: string) => ['residual', '--model', goldenCheckpointDir, '--layer', '2', '--out', out, '--cache-dir', cacheDir, '--threads', '1'];

describe('toxscope residual: bad arguments exit 2 with the usage', () => {
  const cases: [string, string[], RegExp][] = [
    ['no command', [], /usage: toxscope <command>/],
    ['an unknown command', ['frobnicate'], /unknown command 'frobnicate'/],
    ['no --model', ['residual', '--layer', '1', '--ids', '[[1]]', '--out', 'x.safetensors'], /--model is required/],
    ['a non-integer --layer', ['residual', '--model', 'm', '--layer', 'two', '--ids', '[[1]]', '--out', 'x'], /--layer must be an integer, got 'two'/],
    ['a negative --layer', ['residual', '--model', 'm', '--layer=-1', '--ids', '[[1]]', '--out', 'x'], /--layer must be an integer >= 0/],
    ['--ids that is not JSON', ['residual', '--model', 'm', '--layer', '1', '--ids', '[[1,', '--out', 'x'], /--ids is not valid JSON/],
    ['--ids that is not a list of lists', ['residual', '--model', 'm', '--layer', '1', '--ids', '[1, 2]', '--out', 'x'], /--ids must be a non-empty JSON list of token-id lists/],
    ['a negative token id', ['residual', '--model', 'm', '--layer', '1', '--ids', '[[1, -3]]', '--out', 'x'], /sequence 0, position 1: -3 is not a non-negative integer/],
    ['neither --ids nor --text', ['residual', '--model', 'm', '--layer', '1', '--out', 'x'], /give token ids with --ids or texts with --text/],
    ['an unknown --padding', ['residual', '--model', 'm', '--layer', '1', '--ids', '[[1]]', '--padding', 'middle', '--out', 'x'], /--padding must be one of right, left/],
    ['an unknown flag', ['residual', '--model', 'm', '--layer', '1', '--ids', '[[1]]', '--out', 'x', '--colour', 'red'], /Unknown option '--colour'/],
  ];
  for (const [what, argv, message] of cases) {
    it(`on ${what}`, async () => {
      const r = await cli(...argv);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).toMatch(/usage: toxscope/);
    });
  }

  it('on a token id outside the vocabulary', async () => {
    const r = await cli(...base(join(dir, 'never.safetensors')), '--ids', '[[1, 151936]]');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/token id 151936 is outside the vocabulary \(size 151936\)/);
    expect(existsSync(join(dir, 'never.safetensors'))).toBe(false);
  });
});

describe('toxscope residual: bad artifacts exit 1 with the message', () => {
  it('on a model directory that does not exist', async () => {
    const r = await cli('residual', '--model', join(dir, 'nope'), '--layer', '0', '--ids', '[[1]]', '--out', join(dir, 'x.safetensors'));
    expect(r).toMatchObject({ code: 1, stdout: '' });
    expect(r.stderr).toMatch(/nope: model directory does not exist/);
  });

  it('on a layer past the model depth', async () => {
    const r = await cli('residual', '--model', goldenCheckpointDir, '--layer', '4', '--ids', '[[1]]', '--out', join(dir, 'x.safetensors'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/layer 4 is out of range: the model has 4 decoder layers \(0\.\.3\)/);
  });
});

describe('toxscope residual: output file', () => {
  it('writes resid_post [B, T, D] and attention_mask [B, T] that match the goldens (left padding)', async () => {
    const out = join(dir, 'left.safetensors');
    const seqs = readManifest().sequences;
    const r = await cli(...base(out), '--ids', JSON.stringify(seqs), '--padding', 'left');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/resid_post \[6, 64, 64\], attention_mask \[6, 64\]/);
    const st = SafetensorsFile.open(out);
    const goldens = new Goldens();
    try {
      expect([...st.tensors.keys()].sort()).toEqual(['attention_mask', 'resid_post']);
      expect(st.info('resid_post')).toMatchObject({ dtype: 'F32', shape: [6, 64, 64] });
      expect(st.info('attention_mask')).toMatchObject({ dtype: 'I64', shape: [6, 64] });
      const mask = Array.from(st.readTyped('attention_mask') as BigInt64Array, Number);
      expect(mask).toEqual(goldens.ints('left.attention_mask').data);
      const ours = st.readF32('resid_post');
      const golden = goldens.f32('left.resid_post').data; //                               [4, 6, 64, 64], layer 2
      const at = 2 * 6 * 64 * 64;
      let worst = 0;
      for (let bt = 0; bt < mask.length; bt++) if (mask[bt]) for (let i = 0; i < 64; i++) worst = Math.max(worst, Math.abs(ours[bt * 64 + i] - golden[at + bt * 64 + i]));
      expect(worst).toBeLessThan(1e-4);
      expect(st.metadata).toMatchObject({ layer: '2', padding: 'left' });
    } finally {
      st.close();
      goldens.close();
    }
  });

  it('tokenizes --text with the Qwen3 tokenizer, after the --ids rows', async () => {
    const out = join(dir, 'text.safetensors');
    const r = await cli(...base(out), '--ids', '[[9707]]', '--text', 'Hello world, this is a test.', '--text', 'Bonjour');
    expect(r.code).toBe(0);
    const tok = await loadTokenizer(goldenCheckpointDir);
    const lengths = [1, tok.encode('Hello world, this is a test.').length, tok.encode('Bonjour').length];
    const st = SafetensorsFile.open(out);
    const mask = Array.from(st.readTyped('attention_mask') as BigInt64Array, Number);
    const T = Math.max(...lengths);
    expect(st.info('resid_post').shape).toEqual([3, T, 64]);
    expect(lengths.map((_, b) => mask.slice(b * T, (b + 1) * T).reduce((a, m) => a + m, 0))).toEqual(lengths);
    st.close();
  });

  it('runs through the bin launcher (bin/toxscope.js) with the same exit codes', () => {
    const out = join(dir, 'bin.safetensors');
    const ok = spawnSync(process.execPath, [join(repoRoot, 'bin', 'toxscope.js'), ...base(out), '--ids', '[[1, 2, 3]]'], { cwd: repoRoot, encoding: 'utf8' });
    expect(ok.status, ok.stderr).toBe(0);
    expect(SafetensorsFile.open(out).info('resid_post').shape).toEqual([1, 3, 64]);
    const bad = spawnSync(process.execPath, [join(repoRoot, 'bin', 'toxscope.js'), 'residual', '--layer', 'x'], { cwd: repoRoot, encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/usage: toxscope residual/);
  });
});
