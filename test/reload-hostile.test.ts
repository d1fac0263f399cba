/**
 * POST /admin/reload with the production loader (src/main.ts loadServingBundle: the bundle read on a worker
 * thread, the engine on another, then the warm-up) against hostile and slow bundles, through app.request.
 * Each bundle is a copy of one trained here, with one artifact replaced and the hashes re-bound so that the
 * head accepts it: the attacker controls every file of a bundle, so the parsers are what must hold.
 */
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Files } from '../src/bundle/file-hash.js';
import { loadServingBundle } from '../src/main.js';
import { createLogger } from '../src/util/logger.js';
import { ADMIN_TOKEN, buildTestApp, post, type TestApp } from './helpers/app.js';
import { memoDagPickle, strideZeroTorchFile, torchZip, zipBombTorchFile } from './helpers/hostile-artifacts.js';
import { bigShardedModel as bigShardedModelIn, hostileSae as hostileSaeIn, modelCopy as modelCopyIn, rebindBundle } from './helpers/rebind-bundle.js';
import { trainServeBundle } from './helpers/serve-bundle.js';

const root = mkdtempSync(join(tmpdir(), 'toxscope-reload-hostile-'));
const trained = join(root, 'trained');
const logLines: string[] = [];
let t: TestApp;

beforeAll(async () => {
  await trainServeBundle(trained, 'reload-hostile', join(root, 'cache'));
  const log = createLogger('info', (line) => logLines.push(line));
  t = await buildTestApp({
    env: { TOXSCOPE_ADMIN_TOKEN: ADMIN_TOKEN, TOXSCOPE_DATA_DIR: join(root, 'data'), TOXSCOPE_THREADS: '1' },
    deps: { loadBundle: (path) => loadServingBundle(path, t.config, { metrics: t.metrics, log }), log },
  });
}, 300_000);
afterAll(async () => {
  await t?.close();
  rmSync(root, { recursive: true, force: true });
});

const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
const reload = (path: string) => post(t.app, '/admin/reload', { path }, auth);
const classify = (text: string) => post(t.app, '/v1/classify', { texts: [text] });

const rebind = (opts: Parameters<typeof rebindBundle>[2] = {}) => rebindBundle(trained, root, opts);
const hostileSae = (bytes: Buffer) => hostileSaeIn(root, bytes);
const modelCopy = (edit?: (name: string, bytes: Buffer) => void) => modelCopyIn(root, edit);
const bigShardedModel = (mib: number) => bigShardedModelIn(root, mib);

/** The refusal's body, asserted to be a bounded 422 that leaks no path of this machine. */
async function refusal(path: string): Promise<string> {
  const res = await reload(path);
  const body = await res.json();
  expect(res.status).toBe(422);
  const message: string = body.error.message;
  expect(message).toMatch(/^bundle refused, the previous bundle keeps serving: /);
  expect(message.length).toBeLessThan(800);
  expect(message).not.toContain(root);
  expect(message).not.toContain(process.cwd());
  return message;
}

async function stillServingV1(): Promise<void> {
  const res = await classify('the old bundle still answers');
  expect(res.status).toBe(200);
  expect((await res.json()).bundle_version).toBe('tiny-v1');
}

describe('hostile bundles through POST /admin/reload', () => {
  it('refuses an SAE whose pickle memo spells 2^26 tensor names, and keeps serving', async () => {
    expect(await refusal(rebind({ sae: hostileSae(torchZip(memoDagPickle(26))) }))).toMatch(/more than 200000 tensor names/);
    await stillServingV1();
  });

  it('refuses an SAE zip bomb by its declared size, before inflating it', async () => {
    expect(await refusal(rebind({ sae: hostileSae(zipBombTorchFile(512, 512 << 20)) }))).toMatch(/declares 536870912 bytes, more than the 67108864-byte limit/);
    await stillServingV1();
  });

  it('refuses an SAE whose encoder is a stride-0 view of one element', async () => {
    expect(await refusal(rebind({ sae: hostileSae(strideZeroTorchFile(512, 64)) }))).toMatch(/has stride 0 on a dimension longer than 1/);
    await stillServingV1();
  });

  it('refuses a model whose weights hold NaN at warm-up, naming the non-finite codes', async () => {
    const model = modelCopy((name, bytes) => {
      if (name === 'model.layers.0.input_layernorm.weight') for (let i = 0; i < bytes.length; i += 2) bytes.writeUInt16LE(0x7fc0, i); // bf16 NaN
    });
    expect(await refusal(rebind({ model }))).toMatch(/warm-up refused the bundle: the engine produced a non-finite SAE code \(NaN at/);
    await stillServingV1();
  });

  it('answers a manifest that is a symlink to another file without quoting that file or naming this machine\'s paths', async () => {
    const bundle = rebind();
    const secret = join(root, 'secret.txt');
    writeFileSync(secret, 'root:x:0:0:SECRET-hunter2:/root:/bin/bash\n');
    rmSync(join(bundle, 'manifest.json'));
    symlinkSync(secret, join(bundle, 'manifest.json'));
    const message = await refusal(bundle);
    expect(message).toMatch(/^bundle refused, the previous bundle keeps serving: manifest\.json: not valid JSON \(an unexpected character\) \(reference [0-9a-f]{8} in the server log\)$/);
    expect(message).not.toMatch(/root:x|SECRET|hunter2/);
    const reference = /reference ([0-9a-f]{8})/.exec(message)![1];
    const logged = logLines.map((l) => JSON.parse(l)).find((l) => l.reference === reference);
    expect(logged).toMatchObject({ level: 'warn', msg: 'bundle refused: the previous bundle keeps serving', error: expect.stringContaining(join(bundle, 'manifest.json')) });
    await stillServingV1();
  });

  it("answers a model config.json that is a symlink to another file without quoting it", async () => {
    const model = modelCopy();
    writeFileSync(join(root, 'secret-config.txt'), 'SECRET-token-42 not json\n');
    rmSync(join(model, 'config.json'));
    symlinkSync(join(root, 'secret-config.txt'), join(model, 'config.json'));
    // the head claims this directory's content hash (what modelDigest would give if the config parsed)
    const claimModelSha = sha256Files([join(model, 'config.json'), join(model, 'model.safetensors')]);
    const message = await refusal(rebind({ model, claimModelSha }));
    expect(message).toMatch(/unreadable: \.\.\.\/config\.json: not valid JSON \(an unexpected character\)/);
    expect(message).not.toMatch(/SECRET/);
    await stillServingV1();
  });

  it('refuses a checkpoint whose tokenizer.json is a symlink to /dev/zero, before the main thread reads it', async () => {
    const model = modelCopy();
    symlinkSync('/dev/zero', join(model, 'tokenizer.json'));
    expect(await refusal(rebind({ model }))).toMatch(/\.\.\/tokenizer\.json: not a regular file/);
    await stillServingV1();
  });
});

describe('a slow reload', () => {
  it('keeps answering classify requests with the old bundle while a 1 GiB checkpoint is hashed, then refuses it', async () => {
    // the head claims another model: the refusal comes only after the whole checkpoint has been hashed
    const bundle = rebind({ model: bigShardedModel(1024), claimModelSha: 'f'.repeat(64) });
    let reloadDone = false;
    const reloading = reload(bundle).finally(() => (reloadDone = true));
    let answeredDuring = 0;
    while (!reloadDone) {
      const res = await classify(`asked while the reload runs ${answeredDuring}`);
      expect(res.status).toBe(200);
      expect((await res.json()).bundle_version).toBe('tiny-v1');
      if (!reloadDone) answeredDuring++;
    }
    const res = await reloading;
    expect(res.status).toBe(422);
    expect((await res.json()).error.message).toMatch(/model/);
    // before: readBundle hashed on the event loop and nothing was answered until the reload was
    expect(answeredDuring).toBeGreaterThan(0);
  }, 120_000);

  it('swaps in a big but valid bundle after serving the old one throughout', async () => {
    const bundle = rebind({ model: bigShardedModel(256) });
    let reloadDone = false;
    const reloading = reload(bundle).finally(() => (reloadDone = true));
    const versions = new Set<string>();
    while (!reloadDone) versions.add((await (await classify('during a good reload')).json()).bundle_version);
    const res = await reloading;
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'reloaded', previous_version: 'tiny-v1' });
    expect([...versions]).toEqual(['tiny-v1']);
    const after = await classify('after the reload');
    expect((await after.json()).bundle_version).toMatch(/^hostile-/);
  }, 120_000);
});
