/**
 * The direction of the arrows (STYLE.md): entry points -> service core -> engine -> head. Read from the import
 * statements of src/, so a new file that imports the wrong way fails here.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = resolve(import.meta.dirname, '..', 'src');

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** Each source file (relative to src/) with what it imports: package names, or paths relative to src/. */
const IMPORTS = walk(SRC).map((file) => {
  const text = readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/^\s*(?:import|export)\s[^'";]*?from\s+'([^']+)'|^\s*import\s+'([^']+)'|import\('([^']+)'\)/gm)].map((m) => m[1] ?? m[2] ?? m[3]);
  const targets = specs.map((s) => (s.startsWith('.') ? relative(SRC, resolve(dirname(file), s)) : s));
  return { file: relative(SRC, file), targets };
});

const offenders = (from: (file: string) => boolean, to: (target: string) => boolean) =>
  IMPORTS.filter((f) => from(f.file)).flatMap((f) => f.targets.filter(to).map((t) => `${f.file} -> ${t}`));

const under = (dir: string) => (p: string) => p.startsWith(`${dir}/`);

describe('layering of src/', () => {
  it('reads the imports of every source file', () => {
    expect(IMPORTS.length).toBeGreaterThan(50);
    expect(IMPORTS.find((f) => f.file === 'http/app.ts')?.targets).toContain('http/routes/classify.js');
  });

  it('lets nothing outside src/http/ import it but the composition root', () => {
    expect(offenders((f) => !under('http')(f) && f !== 'main.ts', under('http'))).toEqual([]);
  });

  it('keeps Hono out of everything but src/http/ (and the composition root, which binds the port)', () => {
    expect(offenders((f) => !under('http')(f) && f !== 'main.ts', (t) => t === 'hono' || t.startsWith('hono/') || t.startsWith('@hono/'))).toEqual([]);
  });

  it('keeps the service core free of any transport and of the CLI', () => {
    expect(offenders(under('service'), (t) => under('http')(t) || under('cli')(t) || /^(hono|@hono\/|node:http)/.test(t))).toEqual([]);
  });

  it('keeps the engine free of the service core, HTTP and the database', () => {
    expect(offenders(under('engine'), (t) => under('service')(t) || under('http')(t) || under('db')(t) || under('cli')(t))).toEqual([]);
  });

  it('keeps the head pure: no engine, service, HTTP or database', () => {
    expect(offenders(under('head'), (t) => ['engine', 'service', 'http', 'db', 'runtime', 'model'].some((d) => under(d)(t)))).toEqual([]);
  });
});
