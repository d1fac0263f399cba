/**
 * The small repository the rest of ToxScope uses for its database: implemented once with drizzle for both
 * drivers (postgres.js and PGlite). Aggregates are computed in SQL, so every replica on one Postgres agrees.
 */
import { and, asc, desc, eq, gte, inArray, lt, sql, type SQL } from 'drizzle-orm';
import { ToxScopeError } from '../errors.js';
import type { Database } from './client.js';
import { DatabaseError, isTransientDbError } from './db-error.js';
import {
  adminEvents,
  f1Windows,
  feedback,
  predictions,
  thresholdChanges,
  type AdminEvent,
  type F1Window,
  type NewAdminEvent,
  type NewF1Window,
  type NewPrediction,
  type ThresholdChange,
} from './schema.js';

/** A moderator's true label for one prediction. `at` orders repeated feedback: the latest wins (default now). */
export interface FeedbackItem {
  predictionId: string;
  label: boolean; // true = toxic
  source: string;
  at?: Date;
}

/**
 * 'stored': first feedback for this prediction; 'updated': replaced an earlier label; 'unknown_id': no such
 * prediction. `superseded` (with 'updated'): a label with a later timestamp was already stored and was kept.
 */
export type FeedbackStatus = 'stored' | 'updated' | 'unknown_id';
export interface FeedbackResult {
  predictionId: string;
  status: FeedbackStatus;
  superseded?: true;
}

export interface NewThresholdChangeInput {
  actor: string;
  language: string;
  oldThreshold: number | null;
  newThreshold: number;
  reason?: string | null;
  at?: Date;
  /** the version of the bundle whose head the change applies to (replayed on that version only) */
  bundleVersion?: string | null;
  /** the language's own threshold was removed: it falls back to pooled (newThreshold = the pooled value) */
  removed?: boolean;
}

/**
 * The stored threshold overrides of one bundle version, the argument of Head.withThresholds: 'pooled' and
 * language codes -> the threshold; null = the language's own threshold removed (it falls back to pooled).
 */
export type ThresholdOverrides = Record<string, number | null>;

/** Confusion counts of the classifier's label against the moderators' label; positive = toxic. */
export interface LanguageConfusion {
  language: string;
  tp: number;
  fp: number;
  fn: number;
  tn: number;
}

/** One labeled prediction: its stored score and label against the moderator's label (admin page). */
export interface LabeledScore {
  language: string;
  score: number;
  /** the service's label when it answered (score >= the threshold of that moment) */
  predicted: boolean;
  /** the moderator's label; true = toxic */
  truth: boolean;
  createdAt: Date;
}

/** Predictions per language and score bin [bin/bins, (bin+1)/bins), split by feedback label (null: unlabeled). */
export interface ScoreBinCount {
  language: string;
  bin: number;
  truth: boolean | null;
  n: number;
}

export interface Repository {
  /** Idempotent on prediction id (ON CONFLICT DO NOTHING). Returns how many rows were new. */
  insertPredictions(rows: readonly NewPrediction[]): Promise<number>;
  /** One result per item, in order. Repeated ids (across calls or within one) resolve by latest `at`. */
  recordFeedback(items: readonly FeedbackItem[]): Promise<FeedbackResult[]>;
  recordThresholdChange(change: NewThresholdChangeInput): Promise<ThresholdChange>;
  /** Several changes in one statement: all are recorded or none. */
  recordThresholdChanges(changes: readonly NewThresholdChangeInput[]): Promise<ThresholdChange[]>;
  /** The overrides recorded for one bundle version: the latest change (highest id) per language wins. */
  thresholdOverrides(bundleVersion: string): Promise<ThresholdOverrides>;
  /** An admin action for the audit log (a bundle reload). */
  recordAdminEvent(event: Omit<NewAdminEvent, 'id'>): Promise<AdminEvent>;
  /** Newest first. */
  listAdminEvents(options?: { limit?: number }): Promise<AdminEvent[]>;
  /** Newest first. */
  listThresholdChanges(options?: { language?: string; limit?: number }): Promise<ThresholdChange[]>;
  /** Labeled predictions made in [from, to), per language (sorted by language). */
  confusionByLanguage(from: Date, to: Date, language?: string): Promise<LanguageConfusion[]>;
  /** All feedback rows ever stored, per language of the prediction. */
  feedbackTotals(): Promise<Record<string, number>>;
  /** Upsert on (language, windowStart, windowEnd): a recomputed window replaces the stored one. */
  saveF1Windows(rows: readonly NewF1Window[]): Promise<void>;
  /** The most recent window (by windowEnd) per language. */
  latestF1Windows(language?: string): Promise<F1Window[]>;
  /** Labeled predictions made in [from, to), newest first, at most `limit` (default 50,000). */
  labeledScores(from: Date, to: Date, options?: { language?: string; limit?: number }): Promise<LabeledScore[]>;
  /** Score histogram of the predictions made in [from, to): `bins` equal bins over [0, 1], 1.0 in the last. */
  scoreBins(from: Date, to: Date, bins: number): Promise<ScoreBinCount[]>;
  /** Stored F1 windows ending at or after `since`, oldest first (per language when given): the newest `limit` (default 2,000). */
  f1WindowHistory(since: Date, options?: { language?: string; limit?: number }): Promise<F1Window[]>;
  /**
   * The prediction a label for this text most likely belongs to (Perspective's suggestscore): among predictions
   * of the text (its sha256) made at or after `since`, the newest without feedback, else the newest; with how
   * many predictions of the text the window holds.
   */
  predictionForText(textSha256: string, since: Date): Promise<{ id: string; candidates: number } | null>;
  /** A cheap round trip, for readiness. */
  ping(): Promise<void>;
}

// 11 columns per prediction row: 1000 rows stay far below Postgres' 65535 bind parameters.
const INSERT_CHUNK = 1000;

/**
 * Every method's failure becomes a DatabaseError: its SQLSTATE and the driver's message, never the statement's
 * parameters (drizzle's own error text carries them, and callers log what they catch).
 */
export function createRepository(db: Database): Repository {
  return withSafeErrors(createQueries(db));
}

function withSafeErrors(repo: Repository): Repository {
  const safe = {} as Record<string, unknown>;
  for (const [name, fn] of Object.entries(repo) as [string, (...args: unknown[]) => Promise<unknown>][]) {
    safe[name] = async (...args: unknown[]) => {
      try {
        return await fn(...args);
      } catch (e) {
        throw e instanceof ToxScopeError ? e : new DatabaseError(e, isTransientDbError(e));
      }
    };
  }
  return safe as unknown as Repository;
}

function createQueries(db: Database): Repository {
  async function recordThresholdChanges(changes: readonly NewThresholdChangeInput[]): Promise<ThresholdChange[]> {
    if (changes.length === 0) return [];
    const now = new Date();
    return db
      .insert(thresholdChanges)
      .values(
        changes.map((change) => ({
          createdAt: change.at ?? now,
          actor: change.actor,
          language: change.language,
          oldThreshold: change.oldThreshold,
          newThreshold: change.newThreshold,
          reason: change.reason ?? null,
          bundleVersion: change.bundleVersion ?? null,
          removed: change.removed ?? false,
        })),
      )
      .returning()
      .then((rows) => rows.sort((a, b) => a.id - b.id));
  }

  return {
    async insertPredictions(rows) {
      let inserted = 0;
      for (let i = 0; i < rows.length; i += INSERT_CHUNK) {
        const chunk = rows.slice(i, i + INSERT_CHUNK);
        const out = await db
          .insert(predictions)
          .values(chunk as NewPrediction[])
          .onConflictDoNothing({ target: predictions.id })
          .returning({ id: predictions.id });
        inserted += out.length;
      }
      return inserted;
    },

    async recordFeedback(items) {
      if (items.length === 0) return [];
      const now = new Date();
      const ids = [...new Set(items.map((i) => i.predictionId))];
      const known = new Set<string>();
      for (let i = 0; i < ids.length; i += INSERT_CHUNK) {
        const found = await db
          .select({ id: predictions.id })
          .from(predictions)
          .where(inArray(predictions.id, ids.slice(i, i + INSERT_CHUNK)));
        for (const r of found) known.add(r.id);
      }

      // Round k upserts the k-th occurrence of every id: one statement cannot touch a row twice.
      const results: FeedbackResult[] = new Array(items.length);
      const rounds: number[][] = [];
      const seen = new Map<string, number>();
      items.forEach((item, index) => {
        if (!known.has(item.predictionId)) {
          results[index] = { predictionId: item.predictionId, status: 'unknown_id' };
          return;
        }
        const k = seen.get(item.predictionId) ?? 0;
        seen.set(item.predictionId, k + 1);
        (rounds[k] ??= []).push(index);
      });

      for (const round of rounds) {
        for (let i = 0; i < round.length; i += INSERT_CHUNK) {
          const chunk = round.slice(i, i + INSERT_CHUNK);
          const values = chunk.map((index) => {
            const item = items[index];
            const at = item.at ?? now;
            return { predictionId: item.predictionId, label: item.label, source: item.source, createdAt: at, updatedAt: at };
          });
          const written = await db
            .insert(feedback)
            .values(values)
            .onConflictDoUpdate({
              target: feedback.predictionId,
              set: { label: sql`excluded.label`, source: sql`excluded.source`, updatedAt: sql`excluded.updated_at` },
              setWhere: sql`${feedback.updatedAt} <= excluded.updated_at`,
            })
            // xmax = 0 on the returned row version means it was inserted, not updated.
            .returning({ predictionId: feedback.predictionId, inserted: sql<boolean>`(xmax = 0)` });
          const byId = new Map(written.map((w) => [w.predictionId, w.inserted]));
          for (const index of chunk) {
            const predictionId = items[index].predictionId;
            const inserted = byId.get(predictionId);
            results[index] =
              inserted === undefined
                ? { predictionId, status: 'updated', superseded: true }
                : { predictionId, status: inserted ? 'stored' : 'updated' };
          }
        }
      }
      return results;
    },

    async recordThresholdChange(change) {
      const [row] = await recordThresholdChanges([change]);
      return row;
    },

    recordThresholdChanges,

    async thresholdOverrides(bundleVersion) {
      // identity order, not createdAt: replicas' clocks may disagree, the database's sequence does not
      const rows = await db
        .selectDistinctOn([thresholdChanges.language], { language: thresholdChanges.language, value: thresholdChanges.newThreshold, removed: thresholdChanges.removed })
        .from(thresholdChanges)
        .where(eq(thresholdChanges.bundleVersion, bundleVersion))
        .orderBy(asc(thresholdChanges.language), desc(thresholdChanges.id));
      const out: ThresholdOverrides = {};
      for (const r of rows) out[r.language] = r.removed ? null : r.value;
      return out;
    },

    async recordAdminEvent(event) {
      const [row] = await db.insert(adminEvents).values(event).returning();
      return row;
    },

    async listAdminEvents(options = {}) {
      return db.select().from(adminEvents).orderBy(desc(adminEvents.createdAt), desc(adminEvents.id)).limit(options.limit ?? 100);
    },

    async listThresholdChanges(options = {}) {
      const where = options.language ? eq(thresholdChanges.language, options.language) : undefined;
      return db
        .select()
        .from(thresholdChanges)
        .where(where)
        .orderBy(desc(thresholdChanges.createdAt), desc(thresholdChanges.id))
        .limit(options.limit ?? 100);
    },

    async confusionByLanguage(from, to, language) {
      const conditions: SQL[] = [gte(predictions.createdAt, from), lt(predictions.createdAt, to)];
      if (language !== undefined) conditions.push(eq(predictions.language, language));
      const count = (filter: SQL) => sql<number>`count(*) filter (where ${filter})`.mapWith(Number);
      return db
        .select({
          language: predictions.language,
          tp: count(sql`${predictions.label} and ${feedback.label}`),
          fp: count(sql`${predictions.label} and not ${feedback.label}`),
          fn: count(sql`not ${predictions.label} and ${feedback.label}`),
          tn: count(sql`not ${predictions.label} and not ${feedback.label}`),
        })
        .from(predictions)
        .innerJoin(feedback, eq(feedback.predictionId, predictions.id))
        .where(and(...conditions))
        .groupBy(predictions.language)
        .orderBy(asc(predictions.language));
    },

    async predictionForText(textSha256, since) {
      const rows = await db
        .select({ id: predictions.id, labeled: sql<boolean>`(${feedback.predictionId} is not null)` })
        .from(predictions)
        .leftJoin(feedback, eq(feedback.predictionId, predictions.id))
        .where(and(eq(predictions.textSha256, textSha256), gte(predictions.createdAt, since)))
        .orderBy(sql`(${feedback.predictionId} is not null)`, desc(predictions.createdAt), desc(predictions.id))
        .limit(1000);
      return rows.length === 0 ? null : { id: rows[0].id, candidates: rows.length };
    },

    async feedbackTotals() {
      const rows = await db
        .select({ language: predictions.language, n: sql<number>`count(*)`.mapWith(Number) })
        .from(feedback)
        .innerJoin(predictions, eq(predictions.id, feedback.predictionId))
        .groupBy(predictions.language);
      return Object.fromEntries(rows.map((r) => [r.language, r.n]));
    },

    async saveF1Windows(rows) {
      if (rows.length === 0) return;
      await db
        .insert(f1Windows)
        .values(rows as NewF1Window[])
        .onConflictDoUpdate({
          target: [f1Windows.language, f1Windows.windowStart, f1Windows.windowEnd],
          set: {
            n: sql`excluded.n`,
            tp: sql`excluded.tp`,
            fp: sql`excluded.fp`,
            fn: sql`excluded.fn`,
            tn: sql`excluded.tn`,
            precision: sql`excluded.precision`,
            recall: sql`excluded.recall`,
            f1: sql`excluded.f1`,
            baseline: sql`excluded.baseline`,
            drift: sql`excluded.drift`,
            computedAt: sql`excluded.computed_at`,
          },
        });
    },

    async latestF1Windows(language) {
      return db
        .selectDistinctOn([f1Windows.language])
        .from(f1Windows)
        .where(language !== undefined ? eq(f1Windows.language, language) : undefined)
        .orderBy(asc(f1Windows.language), desc(f1Windows.windowEnd), desc(f1Windows.computedAt));
    },

    async labeledScores(from, to, options = {}) {
      const conditions: SQL[] = [gte(predictions.createdAt, from), lt(predictions.createdAt, to)];
      if (options.language !== undefined) conditions.push(eq(predictions.language, options.language));
      return db
        .select({ language: predictions.language, score: predictions.score, predicted: predictions.label, truth: feedback.label, createdAt: predictions.createdAt })
        .from(predictions)
        .innerJoin(feedback, eq(feedback.predictionId, predictions.id))
        .where(and(...conditions))
        .orderBy(desc(predictions.createdAt), desc(predictions.id))
        .limit(options.limit ?? 50_000);
    },

    async scoreBins(from, to, bins) {
      if (!Number.isInteger(bins) || bins < 1 || bins > 1000) throw new ToxScopeError('validation', `scoreBins: bins must be an integer in [1, 1000], got ${bins}`);
      const bin = sql<number>`least(greatest(floor(${predictions.score} * ${bins}), 0), ${bins - 1})::int`.mapWith(Number);
      return db
        .select({ language: predictions.language, bin, truth: feedback.label, n: sql<number>`count(*)`.mapWith(Number) })
        .from(predictions)
        .leftJoin(feedback, eq(feedback.predictionId, predictions.id))
        .where(and(gte(predictions.createdAt, from), lt(predictions.createdAt, to)))
        .groupBy(predictions.language, sql`2`, feedback.label)
        .orderBy(asc(predictions.language), sql`2`);
    },

    async f1WindowHistory(since, options = {}) {
      const conditions: SQL[] = [gte(f1Windows.windowEnd, since)];
      if (options.language !== undefined) conditions.push(eq(f1Windows.language, options.language));
      const newest = await db
        .select()
        .from(f1Windows)
        .where(and(...conditions))
        .orderBy(desc(f1Windows.windowEnd), desc(f1Windows.language))
        .limit(options.limit ?? 2_000);
      return newest.reverse();
    },

    async ping() {
      await db.execute(sql`select 1`);
    },
  };
}
