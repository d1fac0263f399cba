/**
 * `toxscope features`: the output file reproduces the Qwen-Scope goldens (dense codes, firing rates,
 * attention mask); bad arguments exit 2 with the usage, bad SAE files exit 1 with the message.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../src/cli/main.js';
import { SafetensorsFile } from '../src/model/safetensors.js';
import { Goldens, goldenCheckpointDir, goldensDir, readManifest } from './helpers/goldens.js';
import { PickleWriter, zipBytes } from './helpers/torch-save.js';

const dir = mkdtempSync(join(tmpdir(), 'toxscope-cli-features-'));
const cacheDir = join(dir, 'cache');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function cli(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '', stderr = '';
  const code = await main(argv, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
  return { code, stdout, stderr };
}
const qscopeDir = join(goldensDir, 'qscope-sae');
const base = (out: string, ...extra: string[]) => ['features', '--model', goldenCheckpointDir, '--layer', '2', '--out', out, '--cache-dir', cacheDir, '--threads', '1', ...extra];

describe('toxscope features', () => {
  for (const padding of ['right', 'left']) {
    it(`writes code, firing_rates and attention_mask matching the Qwen-Scope goldens (${padding} padding)`, async () => {
      const out = join(dir, `qscope-${padding}.safetensors`);
      const seqs = readManifest('qscope-manifest.json').sequences;
      const r = await cli(...base(out, '--sae', qscopeDir, '--k', '32', '--ids', JSON.stringify(seqs), '--padding', padding, '--check'));
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/code \[5, 97, 512\], firing_rates \[5, 512\], attention_mask \[5, 97\] \(qwen-scope SAE, layer 2, k 32/);
      expect(r.stdout).toMatch(/fired sets differ on 0 tokens/);
      const f = SafetensorsFile.open(out);
      const g = new Goldens('qscope-goldens.safetensors');
      try {
        expect(f.metadata).toMatchObject({ layer: '2', k: '32', padding, sae_format: 'qwen-scope' });
        const mask = Array.from(f.readTyped('attention_mask') as BigInt64Array, Number);
        expect(mask).toEqual(g.ints(`${padding}.attention_mask`).data);
        const code = f.readF32('code');
        const gold = g.f32(`${padding}.sae.L2.code`).data;
        let maxErr = 0;
        for (let bt = 0; bt < 5 * 97; bt++) {
          if (!mask[bt]) {
            expect(code.subarray(bt * 512, (bt + 1) * 512).every((v) => v === 0)).toBe(true);
            continue;
          }
          for (let s = 0; s < 512; s++) maxErr = Math.max(maxErr, Math.abs(code[bt * 512 + s] - gold[bt * 512 + s]));
        }
        expect(maxErr).toBeLessThan(1e-4);
        expect(Array.from(f.readF32('firing_rates'))).toEqual(Array.from(g.f32(`${padding}.sae.L2.firing_rates`).data));
      } finally {
        f.close();
        g.close();
      }
    });
  }

  it('takes a SAELens directory (k and layer from its cfg)', async () => {
    const out = join(dir, 'saelens.safetensors');
    const r = await cli(...base(out, '--sae', join(goldensDir, 'sae-saelens-L2'), '--ids', '[[0, 85295, 146730]]'));
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/code \[1, 3, 512\].*saelens SAE, layer 2, k 16/);
  });

  const usage: [string, string[], RegExp][] = [
    ['no --sae', ['--ids', '[[1]]'], /--sae is required/],
    ['a Qwen-Scope file without --k', ['--sae', qscopeDir, '--ids', '[[1]]'], /k must be given/],
    ['a --k of 0', ['--sae', qscopeDir, '--k', '0', '--ids', '[[1]]'], /--k must be an integer >= 1/],
    ['a --k other than the SAELens cfg', ['--sae', join(goldensDir, 'sae-saelens-L2'), '--k', '8', '--ids', '[[1]]'], /trained with k = 16, but k = 8/],
    ['neither --ids nor --text', ['--sae', qscopeDir, '--k', '32'], /give token ids with --ids or texts with --text/],
  ];
  for (const [what, extra, message] of usage) {
    it(`exits 2 with the usage on ${what}`, async () => {
      const r = await cli(...base(join(dir, 'never.safetensors'), ...extra));
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).toMatch(/usage: toxscope features/);
    });
  }

  it('exits 2 when --layer names a layer the SAE does not read', async () => {
    const r = await cli('features', '--model', goldenCheckpointDir, '--layer', '1', '--sae', join(goldensDir, 'sae-saelens-L2'), '--ids', '[[1]]', '--out', join(dir, 'never.safetensors'));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/reads layer 2, but layer 1 was requested/);
  });

  it('exits 1 on a hostile SAE file, naming the refused global', async () => {
    const bad = join(dir, 'layer2.sae.pt');
    writeFileSync(bad, zipBytes([{ name: 'layer2.sae/data.pkl', data: new PickleWriter().proto(2).global('posix', 'system').stop().bytes() }]));
    const r = await cli(...base(join(dir, 'never.safetensors'), '--sae', bad, '--k', '4', '--ids', '[[1]]'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/global 'posix\.system', which is not allowed/);
  });
});
