/**
 * Service configuration: environment variables and `toxscope serve` flags, parsed ONCE at start-up.
 * Nothing else in the code base reads process.env; the composition root passes the result down.
 *
 * Every setting is one row of SETTINGS: its environment variable, its flag (derived from the variable:
 * TOXSCOPE_MAX_WAIT_MS -> --max-wait-ms, PORT -> --port), a zod schema that coerces the string, a default
 * and a description. Flags override the environment. A bad value is a ToxScopeError('validation') that
 * names the variable or flag and what was expected.
 */
import { delimiter, resolve } from 'node:path';
import { z } from 'zod';
import { ToxScopeError } from './errors.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
export type ExecutionProvider = 'cpu' | 'cuda';
/** How the model's big matrices are stored and multiplied; 'auto' picks per execution provider (src/engine/precision.ts). */
export type PrecisionSetting = 'auto' | 'f32' | 'f16' | 'int8';
export const PRECISION_SETTINGS: readonly PrecisionSetting[] = ['auto', 'f32', 'f16', 'int8'];

export interface Config {
  port: number;
  host: string;
  /** bundle directory; null = the embedded demo bundle (built into dataDir on first use) */
  bundle: string | null;
  /** absolute: embedded database, built graphs, demo bundle */
  dataDir: string;
  /** absolute: directories searched for a bundle's model and SAE by name (content hash verified) */
  modelDirs: string[];
  /** null = admin endpoints disabled */
  adminToken: string | null;
  /** null = embedded PGlite under dataDir */
  databaseUrl: string | null;
  executionProvider: ExecutionProvider;
  /** weight precision of the forward pass (auto: f16 on CUDA, the measured CPU choice on CPU) */
  precision: PrecisionSetting;
  /** intra-op threads for the forward pass; 0 = the runtime's default */
  threads: number;
  logLevel: LogLevel;
  /** keep the raw text of predictions in the database (off: only a hash) */
  storeText: boolean;
  batching: BatchingConfig;
  limits: LimitsConfig;
  drift: DriftConfig;
  /** how often stored threshold overrides are re-read (replicas converge within one period) */
  thresholdSyncMs: number;
  writes: WritesConfig;
  /**
   * in-process restarts of a dead engine worker (src/service/classifier-host.ts), and the engine deaths a text
   * must be present at to be quarantined (src/service/text-quarantine.ts; 0: never)
   */
  engineRestart: { attempts: number; backoffMs: number; quarantineDeaths: number };
  server: ServerConfig;
  /** the NATS JetStream consumer of `toxscope consume` */
  queue: QueueConfig;
  /** how far back Perspective's suggestscore looks for the prediction of a text */
  feedbackMatchHours: number;
}

export interface QueueConfig {
  url: string;
  /** the stream holding the requests (created with the subjects below when missing) */
  stream: string;
  /** requests are published here */
  subject: string;
  /** the durable consumer every replica shares */
  durable: string;
  resultsSubject: string;
  deadLetterSubject: string;
  /** deliveries of one message before it is dead-lettered (JetStream max_deliver) */
  maxDeliver: number;
  /** how long a delivered message may stay unacknowledged before it is redelivered */
  ackWaitMs: number;
  /** most messages one replica classifies at once */
  maxInflight: number;
}

/** The write queue and its journal (src/db/write-queue.ts, src/db/journal.ts). */
export interface WritesConfig {
  /** group-commit window: an accepted row is fsync'd at most this long after its answer (0: before it) */
  journalSyncMs: number;
  /** past this many bytes of journal (a long database outage) new rows are refused (429) */
  maxJournalBytes: number;
  /** how long a row may wait to share a database write; null: 20 ms on Postgres, 250 ms on the embedded PGlite */
  flushDelayMs: number | null;
  /** how often the database is pinged while up, so readiness notices an outage of an idle service (0: never) */
  databasePingMs: number;
}

/** The HTTP listener's own guards against slow or many clients (src/http/server.ts). */
export interface ServerConfig {
  /** longest wait for a request's headers */
  headersTimeoutMs: number;
  /** longest wait for a whole request (headers and body) to arrive; its processing is the request deadline's */
  uploadTimeoutMs: number;
  /** most open connections; further ones are closed at once */
  maxConnections: number;
}

export interface BatchingConfig {
  /** most windows in one forward pass */
  maxBatchTexts: number;
  /** most tokens in one forward pass, padding included: windows x longest window */
  maxBatchTokens: number;
  /** how long the first queued window waits for company before its batch runs */
  maxWaitMs: number;
  /** most windows waiting; beyond it requests fail fast with 429 */
  queueCapacity: number;
  /** deadline of one request from arrival to answer */
  requestTimeoutMs: number;
}

export interface LimitsConfig {
  maxTextsPerRequest: number;
  maxCharsPerText: number;
  maxTokensPerRequest: number;
  /** largest request body accepted, in bytes (413 beyond) */
  maxBodyBytes: number;
  /** a long text is split into windows of at most this many tokens */
  windowTokens: number;
  /** tokens shared by consecutive windows (context for the second window's first tokens) */
  windowOverlap: number;
}

export interface DriftConfig {
  /** alarm when |F1 - baseline| exceeds this */
  tolerance: number;
  /** ... with at least this many labeled predictions in the window */
  minLabeled: number;
  /** how often the drift monitor recomputes F1 windows */
  intervalMs: number;
}

// Each schema describes what it accepts: `--help` and the README's "accepts" column print that description.
const int = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z.coerce.number<string>().int().min(min).max(max).describe(max === Number.MAX_SAFE_INTEGER ? `integer >= ${min}` : `integer ${min} to ${max}`);
const num = (min: number, max: number) => z.coerce.number<string>().min(min).max(max).describe(`number ${min} to ${max}`);
const bool = z.enum(['true', 'false', '1', '0', 'yes', 'no', 'on', 'off']).transform((v) => ['true', '1', 'yes', 'on'].includes(v)).describe('true, false, 1, 0, yes, no, on, off');
const str = z.string().min(1).describe('non-empty string');
const natsName = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, _ and - only').describe('1 to 64 letters, digits, _ or -');
const natsSubject = z.string().regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, 'dot-separated tokens of letters, digits, _ and - (no wildcards)').describe('a NATS subject without wildcards');
const oneOf = <T extends string>(values: readonly [T, ...T[]]) => z.enum(values).describe(`one of ${values.join(', ')}`);

interface Setting {
  env: string;
  /** dotted path in Config */
  path: string;
  schema: z.ZodType<unknown, string>;
  default?: string;
  /** a flag given without a value means this (booleans) */
  bare?: string;
  help: string;
}

export const SETTINGS: readonly Setting[] = [
  { env: 'PORT', path: 'port', schema: int(0, 65535), default: '8080', help: 'TCP port to listen on' },
  { env: 'HOST', path: 'host', schema: str, default: '0.0.0.0', help: 'interface to bind' },
  { env: 'TOXSCOPE_BUNDLE', path: 'bundle', schema: str, help: 'bundle directory (default: the demo bundle, built on first use)' },
  { env: 'TOXSCOPE_DATA_DIR', path: 'dataDir', schema: str, default: '.toxscope', help: 'embedded database, built graphs and demo bundle (relative to the working directory)' },
  { env: 'TOXSCOPE_MODEL_DIR', path: 'modelDirs', schema: z.string().transform((v) => v.split(delimiter).filter((d) => d !== '')).describe(`directories separated by '${delimiter}'`), help: "directories searched for a bundle's model and SAE by name when its recorded location does not hold them (matched by content hash)" },
  { env: 'TOXSCOPE_ADMIN_TOKEN', path: 'adminToken', schema: z.string().min(16, 'must be at least 16 characters').describe('at least 16 characters'), help: 'bearer token for /admin (unset: admin disabled)' },
  { env: 'DATABASE_URL', path: 'databaseUrl', schema: z.string().regex(/^postgres(ql)?:\/\//, 'must start with postgres:// or postgresql://').describe('a postgres:// or postgresql:// URL'), help: 'PostgreSQL URL (unset: embedded PGlite in the data directory)' },
  { env: 'TOXSCOPE_EXECUTION_PROVIDER', path: 'executionProvider', schema: oneOf(['cpu', 'cuda']), default: 'cpu', help: 'onnxruntime execution provider (cuda falls back to cpu, logged, when it cannot load)' },
  {
    env: 'TOXSCOPE_PRECISION', path: 'precision',
    schema: z.enum(PRECISION_SETTINGS as [PrecisionSetting, ...PrecisionSetting[]], { error: `must be one of ${PRECISION_SETTINGS.join(', ')}` }).describe(`one of ${PRECISION_SETTINGS.join(', ')}`),
    default: 'auto', help: 'weight precision of the forward pass (auto: f16 on CUDA, f32 on CPU; int8 opt-in: see Precision below)',
  },
  { env: 'TOXSCOPE_THREADS', path: 'threads', schema: int(0, 1024), default: '0', help: 'intra-op threads for the forward pass (0: runtime default)' },
  { env: 'TOXSCOPE_LOG_LEVEL', path: 'logLevel', schema: oneOf(['debug', 'info', 'warn', 'error', 'silent']), default: 'info', help: 'log verbosity (JSON lines on stderr)' },
  { env: 'TOXSCOPE_STORE_TEXT', path: 'storeText', schema: bool, default: 'false', bare: 'true', help: 'store raw texts with predictions (default: only a hash)' },
  { env: 'TOXSCOPE_MAX_BATCH_TEXTS', path: 'batching.maxBatchTexts', schema: int(1, 4096), default: '32', help: 'most windows in one forward pass' },
  { env: 'TOXSCOPE_MAX_BATCH_TOKENS', path: 'batching.maxBatchTokens', schema: int(1), default: '1024', help: 'most tokens in one forward pass, padding included (windows x longest); bounds the SAE activation memory' },
  { env: 'TOXSCOPE_MAX_WAIT_MS', path: 'batching.maxWaitMs', schema: num(0, 60_000), default: '5', help: 'longest wait for a batch to fill' },
  { env: 'TOXSCOPE_QUEUE_CAPACITY', path: 'batching.queueCapacity', schema: int(1), default: '1024', help: "most queued windows before 429; a text's parts scored alone (sentences, 16-token windows) count their share of a window, so a text within the request limits always fits an empty queue" },
  { env: 'TOXSCOPE_REQUEST_TIMEOUT_MS', path: 'batching.requestTimeoutMs', schema: int(1), default: '30000', help: 'per-request deadline (504 after it)' },
  { env: 'TOXSCOPE_MAX_TEXTS', path: 'limits.maxTextsPerRequest', schema: int(1), default: '256', help: 'most texts in one request (413 beyond)' },
  { env: 'TOXSCOPE_MAX_CHARS', path: 'limits.maxCharsPerText', schema: int(1), default: '100000', help: 'most characters (UTF-16 code units) in one text (413 beyond)' },
  { env: 'TOXSCOPE_MAX_TOKENS', path: 'limits.maxTokensPerRequest', schema: int(1), default: '16384', help: 'most tokens in one request, all texts together (413 beyond; counted while tokenizing, which stops at the limit); keep it within what the engine scores inside TOXSCOPE_REQUEST_TIMEOUT_MS' },
  { env: 'TOXSCOPE_MAX_BODY_BYTES', path: 'limits.maxBodyBytes', schema: int(1024), default: '1048576', help: 'largest request body in bytes (413 beyond, before it is read whole)' },
  { env: 'TOXSCOPE_WINDOW_TOKENS', path: 'limits.windowTokens', schema: int(2), default: '512', help: 'window length for long texts, in tokens' },
  { env: 'TOXSCOPE_WINDOW_OVERLAP', path: 'limits.windowOverlap', schema: int(0), default: '64', help: 'tokens shared by consecutive windows' },
  { env: 'TOXSCOPE_DRIFT_TOLERANCE', path: 'drift.tolerance', schema: num(0, 1), default: '0.05', help: 'drift alarm when |F1 - baseline| exceeds this' },
  { env: 'TOXSCOPE_DRIFT_MIN_LABELED', path: 'drift.minLabeled', schema: int(1), default: '50', help: 'labeled predictions needed in a window before drift can alarm' },
  { env: 'TOXSCOPE_DRIFT_INTERVAL_MS', path: 'drift.intervalMs', schema: int(1000), default: '60000', help: 'how often F1 windows are recomputed' },
  { env: 'TOXSCOPE_JOURNAL_SYNC_MS', path: 'writes.journalSyncMs', schema: int(0, 10_000), default: '50', help: "group-commit window: an accepted row is in the journal (write) before its answer and fsync'd at most this long after it (0: fsync before answering)" },
  { env: 'TOXSCOPE_JOURNAL_MAX_BYTES', path: 'writes.maxJournalBytes', schema: int(1 << 20), default: '1073741824', help: 'largest write journal (rows waiting for the database); past it new rows are refused with 429' },
  { env: 'TOXSCOPE_WRITE_FLUSH_MS', path: 'writes.flushDelayMs', schema: int(0, 600_000), help: 'longest wait for a row to share a database write (default: 20 on Postgres, 250 on the embedded PGlite)' },
  { env: 'TOXSCOPE_DB_PING_MS', path: 'writes.databasePingMs', schema: int(0, 600_000), default: '5000', help: 'how often the database is pinged (select 1) while it is up, so /readyz and toxscope_database_up notice an outage of an idle service (0: never; then only writes notice)' },
  { env: 'TOXSCOPE_ENGINE_RESTARTS', path: 'engineRestart.attempts', schema: int(0, 100), default: '5', help: 'restarts of a dead engine worker thread tried in a row (readiness 503 meanwhile) before liveness fails and the orchestrator restarts the process (0: never restart in-process)' },
  { env: 'TOXSCOPE_ENGINE_RESTART_BACKOFF_MS', path: 'engineRestart.backoffMs', schema: int(0, 600_000), default: '1000', help: 'wait before the first restart of a dead engine worker, doubled for each next attempt (at most 60 s)' },
  { env: 'TOXSCOPE_QUARANTINE_DEATHS', path: 'engineRestart.quarantineDeaths', schema: int(0, 100), default: '2', help: "engine worker deaths a text must be in flight at to be quarantined: refused (422) without running the engine, and dead-lettered by the queue consumer (0: never; kept in the data directory, see \"Texts that crash the engine\")" },
  { env: 'TOXSCOPE_HEADERS_TIMEOUT_MS', path: 'server.headersTimeoutMs', schema: int(100), default: '10000', help: "longest wait for a request's headers (the connection is closed after it)" },
  { env: 'TOXSCOPE_UPLOAD_TIMEOUT_MS', path: 'server.uploadTimeoutMs', schema: int(100), default: '30000', help: 'longest wait for a whole request body to arrive (408 and closed after it)' },
  { env: 'TOXSCOPE_MAX_CONNECTIONS', path: 'server.maxConnections', schema: int(1), default: '1024', help: 'most open client connections (further ones are closed at once)' },
  { env: 'TOXSCOPE_THRESHOLD_SYNC_MS', path: 'thresholdSyncMs', schema: int(1000), default: '15000', help: 'how often threshold overrides are re-read from the database (replicas converge within one period)' },
  { env: 'TOXSCOPE_FEEDBACK_MATCH_HOURS', path: 'feedbackMatchHours', schema: int(1, 8760), default: '72', help: "how far back Perspective's comments:suggestscore looks for the prediction of its text (matched by sha256)" },
  { env: 'TOXSCOPE_NATS_URL', path: 'queue.url', schema: z.string().regex(/^(nats|tls|wss?):\/\/\S+$/, 'must be a nats:// (or tls://, ws://, wss://) URL').describe('a nats://, tls://, ws:// or wss:// URL'), default: 'nats://127.0.0.1:4222', help: 'NATS server of `toxscope consume`' },
  { env: 'TOXSCOPE_NATS_STREAM', path: 'queue.stream', schema: natsName, default: 'TOXSCOPE', help: 'JetStream stream holding the requests (created, with the three subjects, when missing)' },
  { env: 'TOXSCOPE_NATS_SUBJECT', path: 'queue.subject', schema: natsSubject, default: 'toxscope.requests', help: 'subject requests are published to' },
  { env: 'TOXSCOPE_NATS_DURABLE', path: 'queue.durable', schema: natsName, default: 'toxscope', help: 'durable pull consumer shared by every replica' },
  { env: 'TOXSCOPE_NATS_RESULTS_SUBJECT', path: 'queue.resultsSubject', schema: natsSubject, default: 'toxscope.results', help: 'subject results are published to (one per request, with the prediction ids)' },
  { env: 'TOXSCOPE_NATS_DEAD_LETTER_SUBJECT', path: 'queue.deadLetterSubject', schema: natsSubject, default: 'toxscope.dead-letter', help: 'subject requests that cannot be classified go to, with the error' },
  { env: 'TOXSCOPE_NATS_MAX_DELIVER', path: 'queue.maxDeliver', schema: int(1, 1000), default: '5', help: "tries of one message before it is dead-lettered (the durable consumer's max_deliver is one more: that delivery dead-letters a message whose tries all died)" },
  { env: 'TOXSCOPE_NATS_ACK_WAIT_MS', path: 'queue.ackWaitMs', schema: int(1000), default: '30000', help: "how long a replica may hold a message unacknowledged before it is redelivered (a dead replica's messages come back after it)" },
  { env: 'TOXSCOPE_NATS_MAX_INFLIGHT', path: 'queue.maxInflight', schema: int(1, 100_000), default: '256', help: 'most messages one replica classifies at once (fewer are fetched when the batcher is full)' },
];

/** PORT -> --port, TOXSCOPE_MAX_WAIT_MS -> --max-wait-ms */
export function flagOf(env: string): string {
  return '--' + env.replace(/^TOXSCOPE_/, '').toLowerCase().replace(/_/g, '-');
}

export interface ConfigSources {
  env?: Record<string, string | undefined>;
  /** `toxscope serve` arguments, after the command name */
  argv?: readonly string[];
  /** base for a relative data directory */
  cwd?: string;
}

/** Parse environment then flags (flags win). Throws ToxScopeError('validation') naming the variable or flag. */
export function loadConfig({ env = {}, argv = [], cwd = process.cwd() }: ConfigSources = {}): Config {
  const raw = new Map<Setting, { value: string; from: string }>();
  for (const s of SETTINGS) {
    const v = env[s.env];
    if (v !== undefined && v !== '') raw.set(s, { value: v, from: `environment variable ${s.env}` });
  }
  for (const [s, value] of parseFlags(argv)) raw.set(s, { value, from: `flag ${flagOf(s.env)}` });

  const out: Record<string, unknown> = {};
  for (const s of SETTINGS) {
    const given = raw.get(s);
    const text = given?.value ?? s.default;
    let value: unknown = null;
    if (text !== undefined) {
      const r = s.schema.safeParse(text);
      if (!r.success) {
        const why = r.error.issues.map((i) => i.message).join('; ');
        throw new ToxScopeError('validation', `${given?.from ?? `default of ${s.env}`}: invalid value ${JSON.stringify(text)}: ${why}`, {
          variable: s.env,
          flag: flagOf(s.env),
        });
      }
      value = r.data;
    }
    setPath(out, s.path, value);
  }
  const config = out as unknown as Config;
  config.dataDir = resolve(cwd, config.dataDir);
  config.modelDirs = (config.modelDirs ?? []).map((d) => resolve(cwd, d));
  if (config.bundle !== null) config.bundle = resolve(cwd, config.bundle);
  checkConsistency(config);
  return config;
}

/** What the offline commands (train, eval, discover, features, residual) take from the environment, as serve does. */
export interface CliEnvironment {
  dataDir: string;
  modelDirs: string[];
}

export function loadCliEnvironment(env: Record<string, string | undefined> = {}, cwd = process.cwd()): CliEnvironment {
  const pick = (name: string) => SETTINGS.find((s) => s.env === name)!;
  const parse = (s: Setting): unknown => {
    const text = env[s.env] !== undefined && env[s.env] !== '' ? env[s.env] : s.default;
    if (text === undefined) return null;
    const r = s.schema.safeParse(text);
    if (!r.success)
      throw new ToxScopeError('validation', `environment variable ${s.env}: invalid value ${JSON.stringify(text)}: ${r.error.issues.map((i) => i.message).join('; ')}`, { variable: s.env });
    return r.data;
  };
  const dataDir = parse(pick('TOXSCOPE_DATA_DIR')) as string;
  const modelDirs = (parse(pick('TOXSCOPE_MODEL_DIR')) as string[] | null) ?? [];
  return { dataDir: resolve(cwd, dataDir), modelDirs: modelDirs.map((d) => resolve(cwd, d)) };
}

function parseFlags(argv: readonly string[]): Map<Setting, string> {
  const byFlag = new Map(SETTINGS.map((s) => [flagOf(s.env), s]));
  const out = new Map<Setting, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(0, eq) : arg;
    const s = byFlag.get(name);
    if (!s) {
      throw new ToxScopeError('validation', `unknown option '${name}' (known: ${[...byFlag.keys()].join(', ')})`, { flag: name });
    }
    if (eq >= 0) out.set(s, arg.slice(eq + 1));
    else if (s.bare !== undefined && (i + 1 >= argv.length || argv[i + 1].startsWith('--'))) out.set(s, s.bare);
    else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) out.set(s, argv[++i]);
    else throw new ToxScopeError('validation', `option ${name} needs a value (${s.help})`, { flag: name });
  }
  return out;
}

function checkConsistency(c: Config): void {
  const bad = (variable: string, message: string) => {
    throw new ToxScopeError('validation', `${variable} (${flagOf(variable)}): ${message}`, { variable });
  };
  if (c.limits.windowOverlap >= c.limits.windowTokens)
    bad('TOXSCOPE_WINDOW_OVERLAP', `overlap ${c.limits.windowOverlap} must be smaller than TOXSCOPE_WINDOW_TOKENS ${c.limits.windowTokens}`);
  if (c.batching.maxBatchTokens < c.limits.windowTokens)
    bad('TOXSCOPE_MAX_BATCH_TOKENS', `token budget ${c.batching.maxBatchTokens} must hold one full window (TOXSCOPE_WINDOW_TOKENS ${c.limits.windowTokens})`);
}

function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.');
  let o = obj;
  for (const k of keys.slice(0, -1)) o = (o[k] ??= {}) as Record<string, unknown>;
  o[keys[keys.length - 1]] = value;
}

/** What a setting's value must be ("integer >= 1", "at least 16 characters"), from its schema. */
export function acceptsOf(s: Setting): string {
  return s.schema.description ?? 'any string';
}

/** Rules between settings, checked after each is parsed (checkConsistency); `--help` and the README list them. */
export const CROSS_SETTING_RULES: readonly string[] = [
  'TOXSCOPE_WINDOW_OVERLAP must be smaller than TOXSCOPE_WINDOW_TOKENS',
  "TOXSCOPE_MAX_BATCH_TOKENS must hold one full window: at least TOXSCOPE_WINDOW_TOKENS (and at least a bundle's recorded window length)",
];

/** The options block of `toxscope serve --help`, and the README's table. */
export function configHelp(): string {
  return [
    ...SETTINGS.map((s) => `  ${flagOf(s.env).padEnd(22)} ${s.env.padEnd(30)} ${s.help} (${acceptsOf(s)})${s.default !== undefined ? ` [${s.default}]` : ''}`),
    '',
    ...CROSS_SETTING_RULES.map((r) => `  ${r}`),
  ].join('\n');
}

/** The README's configuration table (test/config.test.ts checks the README holds exactly this). */
export function configTable(): string {
  const rows = SETTINGS.map((s) => `| \`${s.env}\` | \`${flagOf(s.env)}\` | ${s.default ?? ''} | ${acceptsOf(s)} | ${s.help.replace(/\|/g, '\\|')} |`);
  return ['| variable | flag | default | accepts | meaning |', '|---|---|---|---|---|', ...rows].join('\n');
}
