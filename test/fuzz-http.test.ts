/**
 * A seeded, bounded fuzz of every public endpoint (issue #10): a few thousand requests built from valid
 * requests by mutation (wrong types, hostile strings, deep or wide JSON, truncated and invalid bodies, wrong
 * content types and methods) through app.request against the real engine, a real in-memory database and the
 * admin token; no answer may be a 5xx, and every 4xx says why in the project's error shape (or is the
 * admin page's HTML). The seed and count are fixed, so a failure reproduces; FUZZ_SEED / FUZZ_REQUESTS
 * explore further.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRepository, type Repository } from '../src/db/repository.js';
import { WriteQueue } from '../src/db/write-queue.js';
import { driftReport } from '../src/drift/monitor.js';
import { seededRandom } from '../src/util/random.js';
import { ADMIN_TOKEN, buildTestApp, request, type TestApp } from './helpers/app.js';
import { openTestDb, type TestDb } from './helpers/db.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20261202);
const REQUESTS = Number(process.env.FUZZ_REQUESTS ?? 3000);

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
const int = (r: Rand, lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));

const NASTY_STRINGS = [
  '', ' ', '\u0000', 'a\u0000b', '\ud800', 'x\udc00y', '😀', '\u202e', '\uFEFF', '\r\n', '%00', '../../etc/passwd', '/etc/passwd', '.', '/',
  '<script>alert(1)</script>', "'; DROP TABLE predictions; --", '{{7*7}}', '${jndi:ldap://x}', 'NaN', 'null', 'true', '-1', '1e309',
  'en', 'EN-gb', 'zz', 'und', 'pt_BR', 'TOXICITY', 'PROBABILITY', 'a'.repeat(300), 'é'.repeat(50), '\u0301'.repeat(40), '你好世界',
];
/** what an HTTP header can carry at all */
const HEADER_SAFE = NASTY_STRINGS.filter((s) => /^[\x20-\x7e]*$/.test(s));
const NASTY_NUMBERS = [0, -0, 1, -1, 0.5, 1.5, 2, 50, 51, 1e308, -1e308, Number.MAX_SAFE_INTEGER, 0.1 + 0.2, 1e-320];

/** A random JSON value of bounded size and depth. */
function randomValue(r: Rand, depth = 0): unknown {
  const k = r();
  if (depth > 3 || k < 0.35) return pick(r, [pick(r, NASTY_STRINGS), pick(r, NASTY_NUMBERS), true, false, null]);
  if (k < 0.7) return Array.from({ length: int(r, 0, 4) }, () => randomValue(r, depth + 1));
  return Object.fromEntries(Array.from({ length: int(r, 0, 4) }, () => [pick(r, [...NASTY_STRINGS, 'texts', 'items', 'id', 'label', 'comment', 'text', 'input']), randomValue(r, depth + 1)]));
}

/** Valid requests of each JSON endpoint, to be mutated. */
function validBody(r: Rand, path: string, ids: string[]): unknown {
  const text = () => pick(r, ['you are an idiot', 'have a nice day', 'Guten Morgen zusammen', '你好', 'ok 😀', 'a'.repeat(int(r, 1, 400))]);
  switch (path) {
    case '/v1/classify':
      return { texts: Array.from({ length: int(r, 1, 3) }, text), ...(r() < 0.3 && { language: pick(r, ['en', 'de', 'zh', 'pt-BR']) }), ...(r() < 0.3 && { explain: true, top_features: int(r, 1, 10) }) };
    case '/v1/moderations':
      return { input: r() < 0.5 ? text() : [text(), { type: 'text', text: text() }], model: 'x' };
    case '/v1alpha1/comments:analyze':
      return { comment: { text: text() }, requestedAttributes: { TOXICITY: r() < 0.5 ? {} : { scoreThreshold: r() } }, languages: ['en'], spanAnnotations: r() < 0.3, doNotStore: r() < 0.3 };
    case '/v1/feedback':
      return { items: [{ id: ids.length > 0 && r() < 0.7 ? pick(r, ids) : `no-such-${int(r, 0, 1e6)}`, label: int(r, 0, 1) }], ...(r() < 0.3 && { source: 'fuzz' }) };
    case '/admin/thresholds':
      return { thresholds: { [pick(r, ['pooled', 'en', 'de', 'pt-BR'])]: r() < 0.1 ? null : r() }, actor: 'fuzz', reason: 'fuzzing' };
    case '/admin/reload':
      return { path: pick(r, ['/nonexistent/bundle', '.', '/', '/etc/passwd', '../..', 'a\u0000b', 'relative/path']) };
    default:
      return {};
  }
}

/** Replace one random leaf or field of `v` with a random value, or drop it. */
function mutate(r: Rand, v: unknown): unknown {
  if (v === null || typeof v !== 'object' || r() < 0.2) return randomValue(r);
  const copy: any = Array.isArray(v) ? [...v] : { ...(v as object) };
  const keys = Object.keys(copy);
  if (keys.length === 0) return randomValue(r);
  const key = pick(r, keys);
  const what = r();
  if (what < 0.15) delete copy[key];
  else if (what < 0.25) copy[pick(r, NASTY_STRINGS)] = randomValue(r);
  else copy[key] = r() < 0.5 ? mutate(r, copy[key]) : randomValue(r);
  return copy;
}

const JSON_POSTS = ['/v1/classify', '/v1/moderations', '/v1alpha1/comments:analyze', '/v1/feedback'];
const GETS = ['/healthz', '/readyz', '/readyz?deep=1', '/info', '/metrics', '/openapi.json', '/admin/thresholds', '/admin/audit', '/admin/drift', '/admin/ui', '/admin/ui/login'];
const QUERIES = ['', '?language=en', '?language=%00', '?language=zz-zz-zz', '?window=24h', '?window=-1h', '?window=99999999d', '?limit=0', '?limit=abc', '?limit=10000', '?lang=en&window=1h&preview=0.3', '?preview=NaN', '?deep=1&deep=2'];

interface Call {
  path: string;
  init: RequestInit;
}

function randomCall(r: Rand, ids: string[]): Call {
  const auth: Record<string, string> = r() < 0.7 ? { authorization: pick(r, [`Bearer ${ADMIN_TOKEN}`, `Bearer ${ADMIN_TOKEN}`, 'Bearer wrong-token-xxxxxxxx', 'Basic abc', 'Bearer']) } : {};
  const kind = r();
  if (kind < 0.55) {
    const path = pick(r, [...JSON_POSTS, ...JSON_POSTS, '/admin/thresholds', '/admin/reload']);
    const method = path === '/admin/thresholds' ? 'PUT' : 'POST';
    let body: string | Uint8Array;
    const valid = validBody(r, path, ids);
    const b = r();
    if (b < 0.35) body = JSON.stringify(valid);
    else if (b < 0.75) body = JSON.stringify(mutate(r, mutate(r, valid)));
    else if (b < 0.82) body = JSON.stringify(valid).slice(0, int(r, 0, 40)); // truncated
    else if (b < 0.86) body = Uint8Array.from({ length: int(r, 1, 64) }, () => int(r, 0, 255)); // random bytes
    else if (b < 0.9) body = '['.repeat(int(r, 20, 3000)) + ']'.repeat(int(r, 0, 3000)); // deep
    else if (b < 0.93) body = `[${'0,'.repeat(int(r, 1, 30_000))}0]`; // wide
    else if (b < 0.96) body = JSON.stringify({ texts: Array.from({ length: int(r, 1, 80) }, () => 'lorem ipsum dolor '.repeat(int(r, 1, 300))) }); // big
    else body = '';
    const type = pick(r, ['application/json', 'application/json', 'application/json; charset=utf-8', 'text/plain', '', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']);
    return { path, init: { method, headers: { ...auth, ...(type && { 'content-type': type }), ...(r() < 0.1 && { 'x-request-id': pick(r, HEADER_SAFE) }) }, body } };
  }
  if (kind < 0.75) return { path: pick(r, GETS) + pick(r, QUERIES), init: { method: 'GET', headers: auth } };
  if (kind < 0.88) {
    // the admin page's forms, well-formed or not, same-origin or not
    const path = pick(r, ['/admin/ui/login', '/admin/ui/thresholds', '/admin/ui/logout']);
    const form = new URLSearchParams({ token: pick(r, [ADMIN_TOKEN, 'wrong', '']), language: pick(r, NASTY_STRINGS), threshold: String(pick(r, [...NASTY_NUMBERS, 'abc', ''])), window: pick(r, ['1h', '7d', 'x', '']) });
    const b = r();
    const body = b < 0.6 ? form.toString() : b < 0.8 ? `--x\r\nContent-Disposition: form-data; name="token"\r\n\r\n${pick(r, NASTY_STRINGS)}` : pick(r, NASTY_STRINGS);
    const type = pick(r, ['application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'multipart/form-data', 'application/json', '']);
    const origin = pick(r, [undefined, 'http://localhost', 'http://evil.example', 'null']);
    return { path: `http://localhost${path}`, init: { method: 'POST', headers: { ...auth, ...(type && { 'content-type': type }), ...(origin && { origin }) }, body } };
  }
  // wrong methods and unknown paths
  const method = pick(r, ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD']);
  const path = pick(r, [...JSON_POSTS, ...GETS, '/', '/v2/classify', '/admin', '/admin/', '/%00', '/v1/classify/../info', `/${pick(r, NASTY_STRINGS)}`]);
  return { path: path.startsWith('/') ? path : `/${encodeURIComponent(path)}`, init: { method, headers: auth, ...(method !== 'GET' && method !== 'HEAD' && { body: '{}' }) } };
}

describe('fuzzing every public endpoint', () => {
  let t: TestApp;
  let db: TestDb;
  let repo: Repository;
  let queue: WriteQueue;
  const journal = mkdtempSync(join(tmpdir(), 'toxscope-fuzz-'));

  beforeAll(async () => {
    db = await openTestDb('pglite');
    repo = createRepository(db.handle.db);
    queue = new WriteQueue({ repo, journalDir: join(journal, 'journal'), flushDelayMs: 5 });
    t = await buildTestApp({
      env: { TOXSCOPE_ADMIN_TOKEN: ADMIN_TOKEN, TOXSCOPE_QUEUE_CAPACITY: '4096' },
      deps: { predictions: queue, audit: repo, review: repo, drift: (q) => driftReport(repo, { en: 0.8 }, q) },
    });
  });
  afterAll(async () => {
    await t?.close();
    await queue?.close();
    await db?.dispose();
    rmSync(journal, { recursive: true, force: true });
  });

  it(`answers ${REQUESTS} seeded requests (seed ${SEED}) without a single 5xx, every error with a message`, async () => {
    const r = seededRandom(SEED);
    const ids: string[] = [];
    const statuses = new Map<number, number>();
    const failures: string[] = [];
    const CONCURRENCY = 8;
    let next = 0;
    const worker = async () => {
      while (next < REQUESTS) {
        const n = next++;
        const call = randomCall(r, ids);
        const res = await request(t.app, call.path, call.init);
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        const text = await res.text();
        const what = `#${n} ${call.init.method} ${call.path} -> ${res.status}: ${text.slice(0, 200)}`;
        if (res.status >= 500) failures.push(what);
        else if (res.status >= 400 && !(res.headers.get('content-type') ?? '').includes('text/html') && call.init.method !== 'HEAD') {
          const message = (() => {
            try {
              return JSON.parse(text)?.error?.message;
            } catch {
              return undefined;
            }
          })();
          if (typeof message !== 'string' || message.length === 0) failures.push(`${what} (no error message)`);
        }
        if (res.status === 200 && call.path === '/v1/classify') for (const x of JSON.parse(text).results ?? []) if (ids.length < 200) ids.push(x.id);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    expect(failures.slice(0, 10)).toEqual([]);
    // the mix reached the engine, the validators and the refusals alike
    expect(statuses.get(200)).toBeGreaterThan(REQUESTS * 0.1);
    expect([...statuses.keys()].filter((s) => s >= 400 && s < 500).length).toBeGreaterThanOrEqual(5);
  });
});
