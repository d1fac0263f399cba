/**
 * bench artifacts: the hostile artifacts of issue #10 item 6, each parsed in a child process of its own (so
 * one that exhausts the heap kills only the child): wall time, peak RSS, and what the parser answered.
 *
 *   npm run -s bench -- artifacts [--json] [--only memo-dag,zip-bomb] [--timeout-s 120] [--heap-mb 4096]
 *       [--bomb-mib 1024] [--dag-levels 26] [--message-levels 24]
 *
 * The machine is shared and noisy: compare numbers within one run.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseFlags, parseIntFlag } from '../src/cli/args.js';
import {
  deepNestingPickle, exponentialMessagePickle, memoDagPickle, rawSafetensors, strideZeroTorchFile, torchZip, zipBombTorchFile,
} from '../test/helpers/hostile-artifacts.js';

const FLAGS = {
  json: { type: 'boolean', default: false },
  only: { type: 'string' },
  'timeout-s': { type: 'string', default: '120' },
  'heap-mb': { type: 'string', default: '4096' },
  'bomb-mib': { type: 'string', default: '1024' },
  'dag-levels': { type: 'string', default: '26' },
  'message-levels': { type: 'string', default: '24' },
} as const;

interface Attack {
  name: string;
  /** file name (its extension picks the parser) and bytes */
  file: string;
  bytes: () => Buffer;
}

interface Outcome {
  attack: string;
  file_bytes: number;
  /** the child's whole life, node and tsx start-up included (about 1-2 s here) */
  wall_s: number;
  /** the parse alone, as the child measured it (null when it died first) */
  parse_s: number | null;
  peak_rss_mb: number | null;
  exit: string;
  answer: string;
}

export async function run(argv: string[]): Promise<number> {
  const values = parseFlags(argv, FLAGS) as Record<Exclude<keyof typeof FLAGS, 'json' | 'only'>, string> & { json: boolean; only?: string };
  const dagLevels = parseIntFlag(values['dag-levels'], 'dag-levels');
  const messageLevels = parseIntFlag(values['message-levels'], 'message-levels');
  const bombMib = parseIntFlag(values['bomb-mib'], 'bomb-mib');
  const attacks: Attack[] = [
    { name: 'memo-dag', file: 'layer0.sae.pt', bytes: () => torchZip(memoDagPickle(dagLevels)) },
    { name: 'exponential-message', file: 'layer0.sae.pt', bytes: () => torchZip(exponentialMessagePickle(messageLevels)) },
    { name: 'deep-nesting', file: 'layer0.sae.pt', bytes: () => torchZip(deepNestingPickle(20_000)) },
    { name: 'zip-bomb', file: 'layer0.sae.pt', bytes: () => zipBombTorchFile(bombMib, bombMib * 2 ** 20) },
    { name: 'zip-bomb-lying-size', file: 'layer0.sae.pt', bytes: () => zipBombTorchFile(bombMib, 1024) },
    { name: 'stride-zero', file: 'layer0.sae.pt', bytes: () => strideZeroTorchFile(65_536, 2_048) },
    {
      name: 'safetensors-shape-overflow',
      file: 'x.safetensors',
      bytes: () => rawSafetensors({ w: { dtype: 'F32', shape: [2 ** 26, 2 ** 26, 2 ** 26, 0], data_offsets: [0, 0] }, v: { dtype: 'F32', shape: [2 ** 20, 2 ** 20], data_offsets: [0, 16] } }, 16),
    },
  ];
  const only = values.only?.split(',');
  const dir = mkdtempSync(join(tmpdir(), 'toxscope-bench-artifacts-'));
  const outcomes: Outcome[] = [];
  try {
    for (const a of attacks.filter((x) => !only || only.includes(x.name))) {
      const path = join(dir, `${a.name}-${a.file}`);
      const bytes = a.bytes();
      writeFileSync(path, bytes);
      outcomes.push({ attack: a.name, file_bytes: bytes.length, ...parseInChild(path, values) });
      rmSync(path, { force: true });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  if (values.json) process.stdout.write(`${JSON.stringify({ bench: 'artifacts', outcomes })}\n`);
  else
    for (const o of outcomes)
      process.stdout.write(`${o.attack.padEnd(28)} ${String(o.file_bytes).padStart(9)} B  wall ${o.wall_s.toFixed(2).padStart(7)} s  parse ${(o.parse_s?.toFixed(3) ?? '?').padStart(7)} s  ${String(o.peak_rss_mb ?? '?').padStart(6)} MB  ${o.exit}: ${o.answer}\n`);
  return 0;
}

function parseInChild(path: string, values: { 'timeout-s': string; 'heap-mb': string }): Omit<Outcome, 'attack' | 'file_bytes'> {
  const started = process.hrtime.bigint();
  const child = spawnSync(
    process.execPath,
    [`--max-old-space-size=${parseIntFlag(values['heap-mb'], 'heap-mb')}`, '--import', 'tsx', fileURLToPath(import.meta.url), '--child', path],
    { encoding: 'utf8', timeout: parseIntFlag(values['timeout-s'], 'timeout-s') * 1000, maxBuffer: 64 << 20 },
  );
  const wall = Number(process.hrtime.bigint() - started) / 1e9;
  const line = child.stdout.trim().split('\n').pop() ?? '';
  let report: { answer?: string; peak_rss_mb?: number; parse_s?: number } = {};
  try {
    report = JSON.parse(line);
  } catch {
    // the child died before reporting
  }
  const exit = child.error ? `killed (${(child.error as NodeJS.ErrnoException).code})` : child.signal ? `killed (${child.signal})` : child.status === 0 ? 'answered' : `exit ${child.status}`;
  const lastErr = child.stderr.trim().split('\n').filter(Boolean).slice(-1)[0] ?? '';
  return { wall_s: wall, parse_s: report.parse_s ?? null, peak_rss_mb: report.peak_rss_mb ?? null, exit, answer: report.answer ?? lastErr.slice(0, 160) };
}

/** Child: parse one file with the parser its name picks, print one JSON line. */
async function child(path: string): Promise<void> {
  let answer: string;
  const started = performance.now();
  try {
    if (path.endsWith('.safetensors')) {
      const { SafetensorsFile } = await import('../src/model/safetensors.js');
      const f = SafetensorsFile.open(path);
      for (const name of f.tensors.keys()) f.readF32(name);
      f.close();
    } else {
      const { TorchFile } = await import('../src/model/sae/torch-file.js');
      const f = TorchFile.open(path);
      for (const name of f.tensors.keys()) f.readF32(name);
      f.close();
    }
    answer = 'accepted';
  } catch (e) {
    const message = (e as Error).message ?? String(e);
    answer = `refused (${message.length} chars): ${message.slice(0, 140)}`;
  }
  const parse_s = (performance.now() - started) / 1000;
  process.stdout.write(`${JSON.stringify({ answer, parse_s, peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024) })}\n`);
}

if (process.argv[2] === '--child') await child(process.argv[3]);
