import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { acceptsOf, configHelp, configTable, CROSS_SETTING_RULES, flagOf, loadConfig, SETTINGS } from '../src/config.js';
import { ToxScopeError } from '../src/errors.js';

const errorOf = (f: () => unknown): ToxScopeError => {
  try {
    f();
  } catch (e) {
    if (e instanceof ToxScopeError) return e;
    throw e;
  }
  throw new Error('expected a ToxScopeError');
};

describe('loadConfig', () => {
  it('has documented defaults with nothing set', () => {
    const c = loadConfig({ env: {}, argv: [], cwd: '/srv/app' });
    expect(c.port).toBe(8080);
    expect(c.bundle).toBeNull();
    expect(c.dataDir).toBe('/srv/app/.toxscope');
    expect(c.adminToken).toBeNull();
    expect(c.databaseUrl).toBeNull();
    expect(c.executionProvider).toBe('cpu');
    expect(c.storeText).toBe(false);
    expect(c.limits.windowOverlap).toBeLessThan(c.limits.windowTokens);
    expect(c.batching.maxBatchTokens).toBeGreaterThanOrEqual(c.limits.windowTokens);
  });

  it('reads the environment and coerces types', () => {
    const c = loadConfig({
      env: { PORT: '9090', TOXSCOPE_BUNDLE: 'bundles/x', TOXSCOPE_STORE_TEXT: 'yes', TOXSCOPE_MAX_WAIT_MS: '2.5', TOXSCOPE_EXECUTION_PROVIDER: 'cuda' },
      cwd: '/srv',
    });
    expect(c.port).toBe(9090);
    expect(c.bundle).toBe('/srv/bundles/x');
    expect(c.storeText).toBe(true);
    expect(c.batching.maxWaitMs).toBe(2.5);
    expect(c.executionProvider).toBe('cuda');
  });

  it('treats an empty variable as unset', () => {
    expect(loadConfig({ env: { PORT: '', TOXSCOPE_ADMIN_TOKEN: '' } }).port).toBe(8080);
  });

  it('lets flags override the environment, with --flag value, --flag=value and bare booleans', () => {
    const c = loadConfig({ env: { PORT: '9090', TOXSCOPE_MAX_TEXTS: '5' }, argv: ['--port', '7070', '--max-texts=9', '--store-text'] });
    expect(c.port).toBe(7070);
    expect(c.limits.maxTextsPerRequest).toBe(9);
    expect(c.storeText).toBe(true);
  });

  it('names the variable and the expectation for a bad value', () => {
    const e = errorOf(() => loadConfig({ env: { PORT: 'eighty' } }));
    expect(e.kind).toBe('validation');
    expect(e.message).toContain('PORT');
    expect(e.message).toContain('"eighty"');
    const p = errorOf(() => loadConfig({ env: { TOXSCOPE_EXECUTION_PROVIDER: 'tpu' } }));
    expect(p.message).toMatch(/TOXSCOPE_EXECUTION_PROVIDER.*tpu/);
    expect(errorOf(() => loadConfig({ env: { PORT: '70000' } })).message).toContain('PORT');
    expect(errorOf(() => loadConfig({ env: { TOXSCOPE_MAX_BATCH_TEXTS: '1.5' } })).message).toContain('TOXSCOPE_MAX_BATCH_TEXTS');
  });

  it('reads the precision from TOXSCOPE_PRECISION or --precision (auto by default) and refuses anything else with a message', () => {
    expect(loadConfig({ env: {} }).precision).toBe('auto');
    expect(loadConfig({ env: { TOXSCOPE_PRECISION: 'int8' } }).precision).toBe('int8');
    expect(loadConfig({ env: { TOXSCOPE_PRECISION: 'f16' }, argv: ['--precision', 'f32'] }).precision).toBe('f32');
    const bad = errorOf(() => loadConfig({ env: { TOXSCOPE_PRECISION: 'int4' } }));
    expect(bad.kind).toBe('validation');
    expect(bad.message).toContain('TOXSCOPE_PRECISION');
    expect(bad.message).toContain('"int4"');
    expect(bad.message).toContain('auto, f32, f16, int8');
    const flag = errorOf(() => loadConfig({ argv: ['--precision=fp8'] }));
    expect(flag.message).toContain('--precision');
    expect(flag.message).toContain('auto, f32, f16, int8');
  });

  it('names the flag when the flag is wrong', () => {
    expect(errorOf(() => loadConfig({ argv: ['--max-wait-ms', '-3'] })).message).toContain('--max-wait-ms');
    expect(errorOf(() => loadConfig({ argv: ['--prot', '1'] })).message).toContain("unknown option '--prot'");
    expect(errorOf(() => loadConfig({ argv: ['--port'] })).message).toContain('--port needs a value');
  });

  it('rejects a short admin token and a non-postgres DATABASE_URL', () => {
    expect(errorOf(() => loadConfig({ env: { TOXSCOPE_ADMIN_TOKEN: 'abc' } })).message).toContain('at least 16');
    expect(errorOf(() => loadConfig({ env: { DATABASE_URL: 'mysql://x' } })).message).toContain('DATABASE_URL');
  });

  it('rejects inconsistent windows and budgets', () => {
    expect(errorOf(() => loadConfig({ env: { TOXSCOPE_WINDOW_TOKENS: '64', TOXSCOPE_WINDOW_OVERLAP: '64' } })).message).toContain(
      'TOXSCOPE_WINDOW_OVERLAP',
    );
    expect(errorOf(() => loadConfig({ env: { TOXSCOPE_MAX_BATCH_TOKENS: '100', TOXSCOPE_WINDOW_TOKENS: '128' } })).message).toContain(
      'TOXSCOPE_MAX_BATCH_TOKENS',
    );
  });

  it('derives one flag per variable and lists them all in the help', () => {
    expect(flagOf('TOXSCOPE_MAX_WAIT_MS')).toBe('--max-wait-ms');
    expect(flagOf('DATABASE_URL')).toBe('--database-url');
    const help = configHelp();
    for (const s of SETTINGS) expect(help).toContain(flagOf(s.env));
    expect(new Set(SETTINGS.map((s) => flagOf(s.env))).size).toBe(SETTINGS.length);
  });

  it('the README documents every setting with what it accepts, and the rules between settings', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    expect(readme).toContain(configTable());
    for (const rule of CROSS_SETTING_RULES) expect(readme).toContain(rule);
    expect(configHelp()).toContain('at least 16 characters');
  });

  it('refuses values just outside what each setting says it accepts, naming the setting', () => {
    let checked = 0;
    for (const s of SETTINGS) {
      const a = acceptsOf(s);
      const range = /^(integer|number) (-?[\d.]+)(?: to (-?[\d.]+))?/.exec(a) ?? /^integer >= (\d+)/.exec(a);
      const bad: string[] = [];
      if (a.startsWith('integer >= ')) bad.push(String(Number(a.slice(11)) - 1), '1.5');
      else if (range && range[3] !== undefined) bad.push(String(Number(range[2]) - 1), String(Number(range[3]) + 1));
      else if (a === 'at least 16 characters') bad.push('x'.repeat(15));
      else if (a.startsWith('one of ')) bad.push('nope');
      for (const value of bad) {
        expect(() => loadConfig({ env: { [s.env]: value } }), `${s.env}=${value}`).toThrow(s.env);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(30);
  });
});
