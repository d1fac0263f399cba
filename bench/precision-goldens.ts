/**
 * bench precision-goldens: a cheaper precision (int8 by default) against float32 on the reference checkpoints and
 * SAEs of ../shared/goldens (dense Qwen3 tiny, both layer-2 SAEs): residual error at the SAE's layer, fired-set
 * agreement with the float32 engine, and the share of tokens the exact-candidate encoder certifies.
 *
 *   npm run -s bench -- precision-goldens [--json] [--precision int8] [--goldens ../shared/goldens]
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseChoice, parseFlags } from '../src/cli/args.js';
import { FiredSetAgreementSum, ResidualErrorSum } from '../src/engine/fidelity.js';
import { ForwardEngine } from '../src/engine/forward-engine.js';
import { loadSae } from '../src/model/sae/load.js';

const FLAGS = {
  json: { type: 'boolean', default: false },
  precision: { type: 'string', default: 'int8' },
  goldens: { type: 'string', default: '../shared/goldens' },
} as const;

export async function run(argv: string[]): Promise<number> {
  const f = parseFlags(argv, FLAGS);
  const precision = parseChoice(f.precision as string, 'precision', ['f16', 'int8'] as const);
  const dir = resolve(f.goldens as string);
  const cacheDir = mkdtempSync(join(tmpdir(), 'toxscope-precision-goldens-'));
  const results: Record<string, unknown>[] = [];
  try {
    const cases = [
      { sae: join(dir, 'qscope-sae', 'layer2.sae.pt'), k: 32, manifest: 'qscope-manifest.json' },
      { sae: join(dir, 'sae-saelens-L2'), k: undefined, manifest: 'manifest.json' },
    ];
    for (const c of cases) {
      const sae = loadSae(c.sae, c.k ? { k: c.k } : {});
      const seqs = (JSON.parse(readFileSync(join(dir, c.manifest), 'utf8')) as { sequences: number[][] }).sequences;
      const open = (p: 'f32' | typeof precision) => ForwardEngine.open({ modelDir: join(dir, 'qwen3-tiny-bf16'), layer: 2, sae, cacheDir, threads: 1, precision: p });
      const ref = await open('f32');
      const cand = await open(precision);
      try {
        for (const padding of ['right', 'left'] as const) {
          const resid = new ResidualErrorSum();
          resid.add(await cand.runResidual(seqs, padding), await ref.runResidual(seqs, padding));
          const fired = new FiredSetAgreementSum();
          const top = await cand.runTopK(seqs, padding);
          fired.add(top, await ref.runTopK(seqs, padding));
          let real = 0, certified = 0;
          top.mask.forEach((m, t) => {
            real += m;
            if (m && top.exact?.[t]) certified++;
          });
          const a = fired.result(), r = resid.result();
          results.push({
            sae: c.sae.slice(dir.length + 1), k: sae.k, d_sae: sae.dSae, padding, tokens: a.tokens,
            fired_set_agreement: a.fired_set_agreement, residual_rel_rms: r.rel_rms, residual_max_abs: r.max_abs,
            sae_certified_fraction: top.exact ? certified / real : null,
          });
        }
      } finally {
        await ref.close();
        await cand.close();
      }
    }
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
  if (f.json) process.stdout.write(JSON.stringify({ bench: 'precision-goldens', precision, results }) + '\n');
  else
    for (const r of results as Record<string, number | string>[])
      process.stdout.write(`${r.sae} (k ${r.k}) ${r.padding}: fired_set_agreement ${(100 * (r.fired_set_agreement as number)).toFixed(1)}% of ${r.tokens} tokens, residual rel. RMS ${(r.residual_rel_rms as number).toExponential(2)}, certified ${r.sae_certified_fraction}\n`);
  return 0;
}
