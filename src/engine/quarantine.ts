/**
 * What the classifier asks of a quarantine of texts that crash the engine (src/service/text-quarantine.ts keeps
 * one, in the data directory). A text is known by the sha256 of its token ids: the normalised text exactly as the
 * engine sees it, never the text itself.
 *
 *   engine dies with text t in its batch  -->  died([t, ...])        t is a suspect (one death can be anything)
 *   t at `deaths` deaths                  -->  isQuarantined(t)      refused before the engine runs
 *   a suspect scored to the end           -->  cleared([t])          it was not t
 */
import { createHash } from 'node:crypto';

export interface EngineQuarantine {
  /** present at enough engine deaths: refuse it without running the engine; how many deaths, else 0 */
  quarantinedAt(digest: string): number;
  /** present at an engine death, not quarantined: it runs in a batch of its own, so that it alone is blamed next time */
  isSuspect(digest: string): boolean;
  /** the engine died while these texts were in its batch */
  died(digests: readonly string[]): void;
  /** these suspects were scored to the end: no longer suspects */
  cleared(digests: readonly string[]): void;
  /** a request was refused because of a quarantined text (for the metrics) */
  refused(): void;
}

/** sha256 of a text's token ids (int32 little-endian), hex. */
export function tokenDigest(ids: readonly number[]): string {
  return createHash('sha256').update(new Uint8Array(Int32Array.from(ids).buffer)).digest('hex');
}
