/**
 * Regenerates fixtures/data/: a small, balanced, seeded sample of the labeled training data, with the
 * licences of every source it keeps and an ATTRIBUTION.md. Run from the repository root:
 *
 *   npx tsx scripts/sample-fixtures.ts [--from ../shared/data] [--out fixtures/data] [--per-class 175] [--seed 4]
 *
 * For every train/*.jsonl file and every language in it, up to `per-class` toxic and `per-class`
 * non-toxic lines are drawn by a seeded shuffle (seed mixed with the file name and language), and written
 * out in their original order, byte for byte. The product reads fixtures/, never ../shared.
 */
import { copyFileSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { readLabeledFile } from '../src/data/labeled.js';
import { seededRandom, shuffleInPlace } from '../src/util/random.js';

/** Provenance of each source file (from ../shared/data/README.md). */
export const SOURCES: Record<string, { dataset: string; url: string; licence: string; licenceFiles: string[]; labels: string }> = {
  'davidson_en.jsonl': { dataset: 't-davidson/hate-speech-and-offensive-language', url: 'https://github.com/t-davidson/hate-speech-and-offensive-language', licence: 'MIT', licenceFiles: ['davidson_MIT.txt'], labels: 'hate or offensive = 1' },
  'paradetox_en.jsonl': { dataset: 's-nlp/paradetox', url: 'https://huggingface.co/datasets/s-nlp/paradetox', licence: 'CC0-1.0', licenceFiles: ['paradetox_CC0-1.0.txt'], labels: 'toxic sentence = 1, its neutral rewrites = 0' },
  'mlma.jsonl': { dataset: 'HKUST-KnowComp/MLMA_hate_speech', url: 'https://github.com/HKUST-KnowComp/MLMA_hate_speech', licence: 'MIT', licenceFiles: ['mlma_MIT.txt'], labels: 'anything but "normal" = 1' },
  'mpold_ar.jsonl': { dataset: 'shammur/Arabic-Offensive-Multi-Platform-SocialMedia-Comment-Dataset', url: 'https://github.com/shammur/Arabic-Offensive-Multi-Platform-SocialMedia-Comment-Dataset', licence: 'Apache-2.0', licenceFiles: ['mpold_Apache-2.0.txt'], labels: 'offensive = 1' },
  'toldbr_pt.jsonl': { dataset: 'JAugusto97/ToLD-Br', url: 'https://github.com/JAugusto97/ToLD-Br', licence: 'CC-BY-SA-4.0', licenceFiles: ['toldbr_CC-BY-SA-4.0.txt'], labels: 'any annotator flag = 1' },
  'curse_detection_ko.jsonl': { dataset: '2runo/Curse-detection-data', url: 'https://github.com/2runo/Curse-detection-data', licence: 'MIT', licenceFiles: ['curse_detection_ko_MIT.txt'], labels: 'curse = 1' },
  'kocohub_ko_train.jsonl': { dataset: 'kocohub/korean-hate-speech', url: 'https://github.com/kocohub/korean-hate-speech', licence: 'CC-BY-SA-4.0', licenceFiles: ['kocohub_CC-BY-SA-4.0.txt'], labels: 'hate or offensive = 1' },
  'cold_zh_train.jsonl': { dataset: 'thu-coai/COLDataset', url: 'https://github.com/thu-coai/COLDataset', licence: 'Apache-2.0', licenceFiles: ['cold_Apache-2.0.txt'], labels: 'offensive = 1' },
  'germeval2018_de_train.jsonl': { dataset: 'uds-lsv/GermEval-2018-Data', url: 'https://github.com/uds-lsv/GermEval-2018-Data', licence: 'CC-BY-4.0', licenceFiles: ['germeval2018_CC-BY-4.0.txt'], labels: 'OFFENSE = 1' },
  'offenseval2020_tr_train.jsonl': { dataset: 'OffensEval 2020 Turkish (Coltekin 2020)', url: 'https://huggingface.co/datasets/coltekin/offenseval2020_tr', licence: 'CC-BY-2.0', licenceFiles: ['offenseval2020_tr_CC-BY-2.0_NOTE.txt'], labels: 'OFF = 1' },
};

export interface SampleOptions {
  from: string;
  out: string;
  perClass: number;
  seed: number;
}

export interface SampledFile {
  file: string;
  perLanguage: Record<string, { toxic: number; nonToxic: number; of: number }>;
}

export function sampleFixtures(o: SampleOptions): SampledFile[] {
  const trainDir = join(o.from, 'train');
  mkdirSync(join(o.out, 'train'), { recursive: true });
  mkdirSync(join(o.out, 'licenses'), { recursive: true });
  const done: SampledFile[] = [];
  for (const file of readdirSync(trainDir).filter((f) => f.endsWith('.jsonl')).sort()) {
    const source = SOURCES[file];
    if (!source) throw new Error(`${join(trainDir, file)}: no provenance recorded in scripts/sample-fixtures.ts SOURCES`);
    const path = join(trainDir, file);
    const rawLines = readFileSync(path, 'utf8').split('\n');
    const texts = readLabeledFile(path); // validates every line
    const keep: number[] = [];
    const perLanguage: SampledFile['perLanguage'] = {};
    for (const lang of [...new Set(texts.map((t) => t.lang))].sort()) {
      const rand = seededRandom(o.seed ^ hash(`${file}/${lang}`));
      const ofLang = texts.filter((t) => t.lang === lang);
      const pick = (label: number) => shuffleInPlace(ofLang.filter((t) => t.label === label), rand).slice(0, o.perClass);
      const toxic = pick(1), nonToxic = pick(0);
      keep.push(...toxic.map((t) => t.line), ...nonToxic.map((t) => t.line));
      perLanguage[lang] = { toxic: toxic.length, nonToxic: nonToxic.length, of: ofLang.length };
    }
    keep.sort((a, b) => a - b);
    writeFileSync(join(o.out, 'train', file), keep.map((line) => rawLines[line - 1].trim() + '\n').join(''));
    for (const l of source.licenceFiles) copyFileSync(join(o.from, 'licenses', l), join(o.out, 'licenses', l));
    done.push({ file, perLanguage });
  }
  writeFileSync(join(o.out, 'ATTRIBUTION.md'), attribution(done, o));
  return done;
}

function attribution(files: SampledFile[], o: SampleOptions): string {
  const rows = files.flatMap(({ file, perLanguage }) => Object.entries(perLanguage).map(([lang, c]) => {
    const s = SOURCES[file];
    return `| train/${file} | ${lang} | ${c.toxic} / ${c.nonToxic} of ${c.of} | [${s.dataset}](${s.url}) | ${s.licence} (licenses/${s.licenceFiles.join(', ')}) | ${s.labels} |`;
  }));
  const total = files.reduce((n, f) => n + Object.values(f.perLanguage).reduce((m, c) => m + c.toxic + c.nonToxic, 0), 0);
  return `# Labeled data sample: attribution

These files are a small sample (${total} texts) of the project's labeled multilingual toxicity data, itself
normalised from the public research datasets below (one JSON object per line:
\`{"text", "label", "lang", "source", "meta"}\`, label 1 = toxic by each source's own annotation). Each text
is copied byte for byte; nothing was edited. Each dataset keeps its own licence, whose text is in
\`licenses/\`; material under CC-BY-SA-4.0 (ToLD-Br, kocohub) stays under CC-BY-SA-4.0 in this sample.

How it was sampled: for every source file and every language in it, up to ${o.perClass} toxic and
${o.perClass} non-toxic lines, drawn by a seeded Fisher-Yates shuffle (mulberry32, seed ${o.seed} XOR a hash
of "file/lang"), kept in their original order. Regenerate with

    npx tsx scripts/sample-fixtures.ts --from ../shared/data --out fixtures/data --per-class ${o.perClass} --seed ${o.seed}

| file | lang | sampled toxic / non-toxic of all | dataset | licence | label 1 means |
|---|---|---|---|---|---|
${rows.join('\n')}

Notes: OffensEval 2020 Turkish (Coltekin, 2020) is distributed under CC-BY-2.0 per its dataset card; see
licenses/offenseval2020_tr_CC-BY-2.0_NOTE.txt. Texts are real social-media posts and contain offensive
language by design.
`;
}

/** FNV-1a, 32-bit. */
function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

function main(argv: string[]): void {
  const arg = (name: string, dflt: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : dflt;
  };
  const options = { from: arg('from', '../shared/data'), out: arg('out', 'fixtures/data'), perClass: Number(arg('per-class', '175')), seed: Number(arg('seed', '4')) };
  for (const f of sampleFixtures(options)) console.log(f.file, JSON.stringify(f.perLanguage));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) main(process.argv.slice(2));
