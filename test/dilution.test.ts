/**
 * Dilution: a toxic sentence keeps its score among benign ones. A bundle trained by trainBundle on the golden tiny
 * checkpoint from the licensed fixture sample, served by the real Classifier on the real engine; every segment
 * (sentence, or window over a long sentence) is encoded as a text of its own.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readBundle, type Bundle } from '../src/bundle/load.js';
import { Head } from '../src/head/head.js';
import { trainBundle } from '../src/bundle/train-bundle.js';
import { readLabeled } from '../src/data/labeled.js';
import { Classifier } from '../src/engine/classifier.js';
import { ForwardEngine } from '../src/engine/forward-engine.js';
import { TextWorker } from '../src/engine/text-worker.js';
import { loadTokenizer } from '../src/engine/tokenizer.js';
import { segmentText, segmentTokens, sentenceBounds, SEGMENT_WINDOW_TOKENS } from '../src/engine/segments.js';
import { loadConfig } from '../src/config.js';
import { goldenCheckpointDir, goldensDir, repoRoot } from './helpers/goldens.js';

let work: string;
let bundle: Bundle;
let classifier: Classifier;
const rows = readLabeled(join(repoRoot, 'fixtures', 'data', 'train'));

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'toxscope-dilution-'));
  const take = (source: string, label: number, n: number) => rows.filter((r) => r.source === source && r.label === label).slice(0, n);
  const sample = [...take('davidson', 1, 150), ...take('davidson', 0, 150)];
  await trainBundle({
    data: sample, modelDir: goldenCheckpointDir, saePath: join(goldensDir, 'sae-saelens-L2'), layer: 2, out: join(work, 'bundle'),
    name: 'dilution', seed: 5, cacheDir: join(work, 'graph-cache'), threads: 1, windowTokens: 64, windowOverlap: 8,
  });
  bundle = readBundle(join(work, 'bundle'));
  const engine = await ForwardEngine.open({ modelDir: bundle.modelDir, layer: 2, sae: bundle.sae, cacheDir: join(work, 'graph-cache'), threads: 1 });
  const config = loadConfig({ env: { TOXSCOPE_WINDOW_TOKENS: '64', TOXSCOPE_WINDOW_OVERLAP: '8' }, cwd: work });
  classifier = new Classifier({ engine, text: await TextWorker.open({ modelDir: bundle.modelDir }), head: bundle.head, version: bundle.manifest.version }, { limits: config.limits, batching: config.batching });
}, 600_000);

afterAll(async () => {
  await classifier?.close();
  rmSync(work, { recursive: true, force: true });
});

const FRIENDLY = ['Thank you so much for your help yesterday.', 'I hope you have a wonderful weekend.', 'The weather is lovely today.', 'See you at the meeting next week.'];
const score = async (texts: string[]) => (await classifier.classify({ texts, language: 'en' })).results;

describe('segments', () => {
  it('cuts an unpunctuated post that runs into the next sentence into windows, one of them inside the post', async () => {
    const tokenizer = await loadTokenizer();
    const post = 'you are the most useless idiot I have ever had the misfortune to meet in my whole life honestly';
    const text = `${post} Thank you so much for your help yesterday. Have a nice day.`;
    const e = tokenizer.encodeWithOffsets(text);
    const segments = segmentTokens(text, e.offsets);
    // UAX #29 sees one sentence up to "yesterday.": the post is not a sentence of its own
    const sentences = segments.filter((s) => s.to - s.from <= 64 && !segments.some((o) => o !== s && o.from <= s.from && o.to >= s.to && o.to - o.from > s.to - s.from));
    expect(sentences.map((s) => text.slice(...segmentText(text, e.offsets, s)))).not.toContain(post);
    const windows = segments.filter((s) => s.to - s.from === SEGMENT_WINDOW_TOKENS);
    expect(windows.length).toBeGreaterThan(1);
    const inside = windows.filter((w) => segmentText(text, e.offsets, w)[1] <= post.length);
    expect(inside.length).toBeGreaterThan(0);
    for (let i = 1; i < windows.length; i++) expect(windows[i].from - windows[i - 1].from).toBeLessThanOrEqual(SEGMENT_WINDOW_TOKENS / 2);
  });

  it('leaves a single short sentence whole: a post alone is scored as before', () => {
    expect(segmentTokens('just one sentence', [[0, 4], [4, 8], [8, 17]])).toEqual([]);
  });
});

describe('dilution', () => {
  it('never scores a punctuated sentence lower among 3 or 30 friendly sentences than alone', async () => {
    // the golden checkpoint is random: its head ranks backwards as often as not, and its calibrator may then fall
    // with the logit; any head trained on real data has one that rises (the max logit is then the max score)
    classifier.setHead(Head.fromJSON({ ...bundle.head.toJSON(), calibration: { method: 'platt', pooled: { kind: 'platt', a: 1, b: 0 }, perLanguage: {} } }));
    const oneSentence = rows.filter((r) => r.source === 'davidson' && r.label === 1 && r.text.length < 160).map((r) => `${r.text.replace(/[.!?\s]*$/u, '')}.`).filter((t) => sentenceBounds(t).length === 1);
    const toxic = oneSentence.slice(40, 50);
    expect(toxic.length).toBe(10);
    const alone = await score(toxic);
    for (const [i, t] of toxic.entries()) {
      for (const pad of [3, 30]) {
        const sentences = Array.from({ length: pad }, (_, j) => FRIENDLY[(i + j) % FRIENDLY.length]);
        sentences.splice((i * 7) % (pad + 1), 0, t);
        const [padded] = await score([sentences.join(' ')]);
        expect(padded.score).toBeGreaterThanOrEqual(alone[i].score - 1e-6);
        if (alone[i].toxic) expect(padded.toxic).toBe(true);
      }
    }
  });

  it('points the span at the segment that drove the score: that segment alone scores the same', async () => {
    const toxic = rows.filter((r) => r.source === 'davidson' && r.label === 1).slice(220, 232).map((r) => r.text.replace(/[.!?\s]*$/u, '')); // no end punctuation
    const padded = toxic.map((t, i) => [FRIENDLY[i % 4], t, FRIENDLY[(i + 1) % 4], FRIENDLY[(i + 2) % 4]].join(' '));
    const results = await score(padded);
    const driving = results.map((r, i) => padded[i].slice(r.span[0], r.span[1]));
    const again = await score(driving);
    results.forEach((r, i) => expect(again[i].score).toBeCloseTo(r.score, 5));
    expect(driving.filter((d, i) => d.length < padded[i].length).length).toBeGreaterThan(0); // parts, not only whole texts
  });
});
