/**
 * Bundles that travel: a bundle names its model and SAE by content hash and a location relative to itself, so
 * it loads after moving with its model, from an image layout (bundle + model search directory), or with the
 * model copied into it; a missing or different model is refused with what was expected and every path tried.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readBundle } from '../src/bundle/load.js';
import { trainBundle } from '../src/bundle/train-bundle.js';
import { main } from '../src/cli/main.js';
import { loadConfig } from '../src/config.js';
import { readLabeled } from '../src/data/labeled.js';
import { loadServingBundle } from '../src/main.js';
import { createMetrics } from '../src/metrics/metrics.js';
import { createLogger } from '../src/util/logger.js';
import { goldenCheckpointDir, goldenShardedCheckpointDir, goldensDir } from './helpers/goldens.js';

let work: string;
let trained: string;
let sampleFile: string;
let modelSha: string;

const MODEL = 'qwen3-tiny';
const SAE_TAIL = join('qscope-tiny', 'layer2.sae.pt');

/** A directory holding the model and the SAE release the way a models volume would. */
function modelsDir(at: string, model = goldenCheckpointDir): string {
  cpSync(model, join(at, MODEL), { recursive: true });
  mkdirSync(join(at, 'qscope-tiny'), { recursive: true });
  cpSync(join(goldensDir, 'qscope-sae', 'layer2.sae.pt'), join(at, SAE_TAIL));
  return at;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'toxscope-relocate-'));
  const rows = readLabeled('fixtures/data/train/davidson_en.jsonl');
  const sample = [0, 1].flatMap((label) => rows.filter((r) => r.label === label).slice(0, 30));
  sampleFile = join(work, 'sample.jsonl');
  writeFileSync(sampleFile, sample.map((r) => JSON.stringify({ text: r.text, label: r.label, lang: r.lang })).join('\n') + '\n');
  const models = modelsDir(join(work, 'train', 'models'));
  trained = join(work, 'train', 'bundles', 'tiny');
  const r = await trainBundle({
    data: sample, modelDir: join(models, MODEL), saePath: join(models, SAE_TAIL), layer: 2, k: 32, out: trained,
    name: 'tiny', seed: 1, cacheDir: join(work, 'graph-cache'), threads: 1,
  });
  modelSha = r.manifest.model.sha256;
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('a bundle that travels', () => {
  it('records its model and SAE relative to the bundle directory, never as absolute paths of the training machine', () => {
    const m = JSON.parse(readFileSync(join(trained, 'manifest.json'), 'utf8'));
    expect(m.model.path).toBe(`../../models/${MODEL}`);
    expect(m.sae.path).toBe('../../models/qscope-tiny/layer2.sae.pt');
    expect(m.model.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('loads after the bundle and its models move together', () => {
    const moved = join(work, 'moved', 'release-1');
    mkdirSync(join(work, 'moved'), { recursive: true });
    cpSync(join(work, 'train'), moved, { recursive: true });
    const b = readBundle(join(moved, 'bundles', 'tiny'));
    expect(b.modelDir).toBe(join(moved, 'models', MODEL));
    expect(b.saePath).toBe(join(moved, 'models', SAE_TAIL));
  });

  it('refuses a bundle moved alone, saying which model it expected (hash) and every path it tried', () => {
    const alone = join(work, 'alone', 'a', 'b', 'tiny');
    cpSync(trained, alone, { recursive: true });
    let message = '';
    try {
      readBundle(alone);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toContain(`the bundle's model was not found: expected sha256 ${modelSha}`);
    expect(message).toContain(`${join(work, 'alone', 'a', 'models', MODEL)} (missing)`);
    expect(message).toContain(`${join(alone, 'model')} (missing)`);
    expect(message).toContain(`set TOXSCOPE_MODEL_DIR to directories holding "${MODEL}"`);
  });

  it('loads from an image layout: the bundle at /bundle, the model and SAE in a TOXSCOPE_MODEL_DIR directory', () => {
    const image = join(work, 'image');
    cpSync(trained, join(image, 'bundle'), { recursive: true });
    modelsDir(join(image, 'models'));
    const config = loadConfig({ env: { TOXSCOPE_BUNDLE: 'bundle', TOXSCOPE_MODEL_DIR: `/nonexistent:models` }, cwd: image });
    expect(config.modelDirs).toEqual(['/nonexistent', join(image, 'models')]);
    const b = readBundle(config.bundle!, { modelDirs: config.modelDirs });
    expect(b.modelDir).toBe(join(image, 'models', MODEL));
    expect(b.saePath).toBe(join(image, 'models', SAE_TAIL));
  });

  it('serve loads that image layout through TOXSCOPE_MODEL_DIR (the configured bundle, warmed up)', async () => {
    const image = join(work, 'image');
    const config = loadConfig({ env: { TOXSCOPE_BUNDLE: 'bundle', TOXSCOPE_MODEL_DIR: 'models', TOXSCOPE_DATA_DIR: 'data', TOXSCOPE_THREADS: '1' }, cwd: image });
    const loaded = await loadServingBundle(undefined, config, { metrics: createMetrics(), log: createLogger('silent') });
    try {
      expect(loaded.info.model.path).toBe(join(image, 'models', MODEL));
      const out = await loaded.classifier.classify({ texts: ['you are an idiot'] });
      expect(out.results[0].score).toBeGreaterThanOrEqual(0);
    } finally {
      await loaded.classifier.close();
    }
  });

  it('loads with the model and SAE copied into the bundle directory (model/, sae/)', () => {
    const self = join(work, 'self-contained');
    cpSync(trained, self, { recursive: true });
    cpSync(goldenCheckpointDir, join(self, 'model'), { recursive: true });
    mkdirSync(join(self, 'sae', 'qscope-tiny'), { recursive: true });
    cpSync(join(goldensDir, 'qscope-sae', 'layer2.sae.pt'), join(self, 'sae', SAE_TAIL));
    const b = readBundle(self);
    expect(b.modelDir).toBe(join(self, 'model'));
    expect(b.saePath).toBe(join(self, 'sae', SAE_TAIL));
  });

  it('refuses a different model found under the expected name, with both hashes', () => {
    const image = join(work, 'image-other');
    cpSync(trained, join(image, 'bundle'), { recursive: true });
    modelsDir(join(image, 'models'), goldenShardedCheckpointDir); // the same weights, other files: another content hash
    expect(() => readBundle(join(image, 'bundle'), { modelDirs: [join(image, 'models')] })).toThrow(
      new RegExp(`expected sha256 ${modelSha}.*${join(image, 'models', MODEL)} \\(a different model: sha256 [0-9a-f]{12}\\)`),
    );
  });

  it('CLI: eval finds the model through TOXSCOPE_MODEL_DIR and keeps its graphs under TOXSCOPE_DATA_DIR', async () => {
    const image = join(work, 'image');
    const dataDir = join(work, 'cli-data');
    let stdout = '';
    let stderr = '';
    const code = await main(['eval', '--data', sampleFile, '--bundle', join(image, 'bundle'), '--json', '--threads', '1'], {
      stdout: (t) => void (stdout += t),
      stderr: (t) => void (stderr += t),
      env: { TOXSCOPE_DATA_DIR: dataDir, TOXSCOPE_MODEL_DIR: join(image, 'models') },
    });
    expect(stderr).not.toContain('error');
    expect(code).toBe(0);
    expect(JSON.parse(stdout).overall.n).toBe(60);
    expect(existsSync(join(dataDir, 'graph-cache'))).toBe(true);
    expect(existsSync(join(dataDir, 'hash-cache.json'))).toBe(true);
  });
});

it('renames keep a relative bundle valid (the demo bundle is trained into bundle.partial and renamed)', () => {
  const parent = join(work, 'rename');
  cpSync(join(work, 'train'), parent, { recursive: true });
  renameSync(join(parent, 'bundles', 'tiny'), join(parent, 'bundles', 'tiny-renamed'));
  expect(readBundle(join(parent, 'bundles', 'tiny-renamed')).modelDir).toBe(join(parent, 'models', MODEL));
});
