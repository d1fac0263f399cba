/**
 * `toxscope <command> [flags]`: dispatches to one module per command. Adding a command is one line in
 * COMMANDS (loaded lazily, so a command's dependencies load only when it runs).
 *
 * Exit codes: 0 ok; 2 bad arguments (usage on stderr); 1 anything else (a bad artifact, a failed run).
 */
import { pathToFileURL } from 'node:url';
import { isToxScopeError } from '../errors.js';
import { UsageError } from './args.js';

export interface CliIO {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** the environment the commands read their defaults from (TOXSCOPE_DATA_DIR, TOXSCOPE_MODEL_DIR); none when absent */
  env?: Record<string, string | undefined>;
}

export interface Command {
  name: string;
  summary: string;
  usage: string;
  /** resolves to the exit code */
  run(argv: string[], io: CliIO): Promise<number>;
}

const COMMANDS: Record<string, () => Promise<Command>> = {
  residual: async () => (await import('./residual.js')).residualCommand,
  features: async () => (await import('./features.js')).featuresCommand,
  train: async () => (await import('./train.js')).trainCommand,
  eval: async () => (await import('./eval.js')).evalCommand,
  discover: async () => (await import('./discover.js')).discoverCommand,
  serve: async () => (await import('./serve.js')).serveCommand,
  fidelity: async () => (await import('./fidelity.js')).fidelityCommand,
  consume: async () => (await import('./consume.js')).consumeCommand,
};

export const processIO: CliIO = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  env: process.env,
};

function overview(): string {
  return ['usage: toxscope <command> [flags]', '', 'commands:', ...Object.keys(COMMANDS).map((c) => `  ${c}`), '', 'run `toxscope <command> --help` for its flags', ''].join('\n');
}

export async function main(argv: string[], io: CliIO = processIO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? io.stderr : io.stdout)(overview());
    return name === undefined ? 2 : 0;
  }
  const load = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!load) {
    io.stderr(`toxscope: unknown command '${name}'\n\n${overview()}`);
    return 2;
  }
  const cmd = await load();
  if (rest.includes('--help') || rest.includes('-h')) {
    io.stdout(`${cmd.summary}\n\n${cmd.usage}\n`);
    return 0;
  }
  try {
    return await cmd.run(rest, io);
  } catch (e) {
    if (e instanceof UsageError || (isToxScopeError(e) && e.kind === 'validation')) {
      io.stderr(`toxscope ${cmd.name}: ${e.message}\n\n${cmd.usage}\n`);
      return 2;
    }
    if (isToxScopeError(e)) {
      io.stderr(`toxscope ${cmd.name}: ${e.kind === 'format' ? '' : `${e.kind} error: `}${e.message}\n`);
      return 1;
    }
    io.stderr(`toxscope ${cmd.name}: unexpected error: ${(e as Error)?.stack ?? String(e)}\n`);
    return 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
