/**
 * `npm run -s bench -- <name> [flags]`: one module per benchmark; adding one is one line in BENCHES.
 * Each prints a readable summary, or exactly one JSON object with --json.
 */
const BENCHES: Record<string, () => Promise<{ run(argv: string[]): Promise<number> }>> = {
  engine: () => import('./engine.js'),
  http: () => import('./http.js'),
  drift: () => import('./drift.js'),
  consume: () => import('./consume.js'),
  artifacts: () => import('./artifacts.js'),
  reload: () => import('./reload.js'),
  'int8-matmul': () => import('./int8-matmul.js'),
  'precision-goldens': () => import('./precision-goldens.js'),
  stall: () => import('./stall.js'),
  'db-stall': () => import('./db-stall.js'),
  'gdn-ops': () => import('./gdn-ops.js'),
  'operating-points': () => import('./operating-points.js'),
  dilution: () => import('./dilution.js'),
  attributes: () => import('./attributes.js'),
  'migrate-attributes': () => import('./migrate-attributes.js'),
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  const load = name !== undefined && Object.hasOwn(BENCHES, name) ? BENCHES[name] : undefined;
  if (!load) {
    process.stderr.write(`usage: npm run -s bench -- <${Object.keys(BENCHES).join('|')}> [--json] [flags]\n`);
    return 2;
  }
  return (await load()).run(rest);
}

process.exitCode = await main(process.argv.slice(2));
