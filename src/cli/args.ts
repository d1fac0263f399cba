/** Flag parsing for CLI commands: node's parseArgs, with every mistake reported as a UsageError (exit code 2). */
import { parseArgs } from 'node:util';

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface FlagSpec {
  type: 'string' | 'boolean';
  multiple?: boolean;
  default?: string | boolean;
}

/** Parse `argv` against `flags` (strict: unknown flags and positionals are usage errors). */
export function parseFlags<F extends Record<string, FlagSpec>>(argv: string[], flags: F): Record<keyof F, string | string[] | boolean | undefined> {
  try {
    const { values } = parseArgs({ args: argv, options: flags, strict: true, allowPositionals: false });
    return values as unknown as Record<keyof F, string | string[] | boolean | undefined>;
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0]);
  }
}

export function requireString(values: Record<string, unknown>, flag: string): string {
  const v = values[flag];
  if (typeof v !== 'string' || v === '') throw new UsageError(`--${flag} is required`);
  return v;
}

export function parseIntFlag(raw: string, flag: string, min = 0): number {
  if (!/^-?\d+$/.test(raw.trim())) throw new UsageError(`--${flag} must be an integer, got '${raw}'`);
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`--${flag} must be an integer >= ${min}, got '${raw}'`);
  return n;
}

export function parseChoice<T extends string>(raw: string, flag: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(raw)) throw new UsageError(`--${flag} must be one of ${choices.join(', ')}, got '${raw}'`);
  return raw as T;
}

/** --provider and --threads, shared by every command that runs the engine. */
export function parseEngineFlags(values: Record<string, unknown>): { provider: 'cpu' | 'cuda'; threads: number | undefined } {
  const provider = parseChoice((values.provider as string | undefined) ?? 'cpu', 'provider', ['cpu', 'cuda'] as const);
  const threads = values.threads === undefined ? undefined : parseIntFlag(values.threads as string, 'threads', 1);
  return { provider, threads };
}
