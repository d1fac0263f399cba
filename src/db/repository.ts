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
  DEFAULT_ATTRIBUTE,
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
  /** the attribute the label is for (default toxicity) */
  attribute?: string;
  label: boolean; // true = toxic (the attribute applies)
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
  /** the attribute labeled (toxicity when the item named none) */
  attribute: string;
  status: FeedbackStatus;
  superseded?: true;
}

export interface NewThresholdChangeInput {
  actor: string;
  /** the attribute whose head the change applies to (default toxicity) */
  attribute?: string;
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

/** Attribute -> its stored overrides (attributes without any are absent). */
export type AttributeOverrides = Record<string, ThresholdOverrides>;

/** Which attribute a per-attribute query reads (default toxicity). */
export interface AttributeOption {
  attribute?: string;
}

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
  /** The overrides recorded for one bundle version's toxicity head (or `attribute`'s): the latest change (highest id) per language wins. */
  thresholdOverrides(bundleVersion: string, attribute?: string): Promise<ThresholdOverrides>;
  /** The overrides of every attribute of one bundle version: attribute -> language -> the latest change. */
  attributeOverrides(bundleVersion: string): Promise<AttributeOverrides>;
  /** An admin action for the audit log (a bundle reload). */
  recordAdminEvent(event: Omit<NewAdminEvent, 'id'>): Promise<AdminEvent>;
  /** Newest first. */
  listAdminEvents(options?: { limit?: number }): Promise<AdminEvent[]>;
  /** Newest first. */
  listThresholdChanges(options?: { language?: string; attribute?: string; limit?: number }): Promise<ThresholdChange[]>;
  /**
   * Labeled predictions made in [from, to), per language (sorted by language), for toxicity or `attribute`:
   * predictions that scored the attribute, against feedback for that attribute.
   */
  confusionByLanguage(from: Date, to: Date, language?: string, options?: AttributeOption): Promise<LanguageConfusion[]>;
  /** All feedback rows ever stored for toxicity (or `attribute`), per language of the prediction. */
  feedbackTotals(options?: AttributeOption): Promise<Record<string, number>>;
  /** Upsert on (attribute, language, windowStart, windowEnd): a recomputed window replaces the stored one. */
  saveF1Windows(rows: readonly NewF1Window[]): Promise<void>;
  /** The most recent window (by windowEnd) per language, of toxicity (or `attribute`). */
  latestF1Windows(language?: string, options?: AttributeOption): Promise<F1Window[]>;
  /** Labeled predictions made in [from, to), newest first, at most `limit` (default 50,000); toxicity's unless `attribute`. */
  labeledScores(from: Date, to: Date, options?: { language?: string; limit?: number; attribute?: string }): Promise<LabeledScore[]>;
  /** Score histogram of the predictions made in [from, to): `bins` equal bins over [0, 1], 1.0 in the last; toxicity's unless `attribute`. */
  scoreBins(from: Date, to: Date, bins: number, options?: AttributeOption): Promise<ScoreBinCount[]>;
  /** Stored F1 windows ending at or after `since`, oldest first (per language when given): the newest `limit` (default 2,000); toxicity's unless `attribute`. */
  f1WindowHistory(since: Date, options?: { language?: string; limit?: number; attribute?: string }): Promise<F1Window[]>;
  /**
   * The prediction a label for this text most likely belongs to (Perspective's suggestscore): among predictions
   * of the text (its sha256) made at or after `since`, the newest without feedback (for toxicity, or for `attribute`),
   * else the newest; with how
   * many predictions of the text the window holds.
   */
  predictionForText(textSha256: string, since: Date, options?: AttributeOption): Promise<{ id: string; candidates: number } | null>;
  /** A cheap round trip, for readiness. */
  ping(): Promise<void>;
}

// 12 columns per prediction row: 1000 rows stay far below Postgres' 65535 bind parameters.
const INSERT_CHUNK = 1000;

/**
 * One attribute's score, decision and presence on a prediction row: toxicity's columns, or the other attribute's
 * entry in the `attributes` jsonb (absent on rows that did not score it, and on rows older than attributes).
 */
function attributeOf(attribute: string | undefined) {
  if (attribute === undefined || attribute === DEFAULT_ATTRIBUTE) return { name: DEFAULT_ATTRIBUTE, score: sql<number>`${predictions.score}`.mapWith(Number), label: sql<boolean>`${predictions.label}`, present: sql`true` };
  const entry = sql`(${predictions.attributes} -> ${attribute}::text)`;
  return {
    name: attribute,
    score: sql<number>`(${entry} ->> 'score')::real`.mapWith(Number),
    label: sql<boolean>`(${entry} ->> 'label')::boolean`.mapWith((v: unknown) => v === true || v === 't' || v === 'true'),
    present: sql`${entry} is not null`,
  };
}

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
          attribute: change.attribute ?? DEFAULT_ATTRIBUTE,
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

  async function attributeOverrides(bundleVersion: string, only?: string): Promise<AttributeOverrides> {
    // identity order, not createdAt: replicas' clocks may disagree, the database's sequence does not
    const conditions: SQL[] = [eq(thresholdChanges.bundleVersion, bundleVersion)];
    if (only !== undefined) conditions.push(eq(thresholdChanges.attribute, only));
    const rows = await db
      .selectDistinctOn([thresholdChanges.attribute, thresholdChanges.language], {
        attribute: thresholdChanges.attribute,
        language: thresholdChanges.language,
        value: thresholdChanges.newThreshold,
        removed: thresholdChanges.removed,
      })
      .from(thresholdChanges)
      .where(and(...conditions))
      .orderBy(asc(thresholdChanges.attribute), asc(thresholdChanges.language), desc(thresholdChanges.id));
    const out: AttributeOverrides = {};
    for (const r of rows) (out[r.attribute] ??= {})[r.language] = r.removed ? null : r.value;
    return out;
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
      const attributeOfItem = (i: Pick<FeedbackItem, 'attribute'>) => i.attribute ?? DEFAULT_ATTRIBUTE;
      const keyOf = (i: Pick<FeedbackItem, 'predictionId' | 'attribute'>) => `${attributeOfItem(i)}\u0000${i.predictionId}`;
      items.forEach((item, index) => {
        if (!known.has(item.predictionId)) {
          results[index] = { predictionId: item.predictionId, attribute: attributeOfItem(item), status: 'unknown_id' };
          return;
        }
        const k = seen.get(keyOf(item)) ?? 0;
        seen.set(keyOf(item), k + 1);
        (rounds[k] ??= []).push(index);
      });

      for (const round of rounds) {
        for (let i = 0; i < round.length; i += INSERT_CHUNK) {
          const chunk = round.slice(i, i + INSERT_CHUNK);
          const values = chunk.map((index) => {
            const item = items[index];
            const at = item.at ?? now;
            return { predictionId: item.predictionId, attribute: attributeOfItem(item), label: item.label, source: item.source, createdAt: at, updatedAt: at };
          });
          const written = await db
            .insert(feedback)
            .values(values)
            .onConflictDoUpdate({
              target: [feedback.predictionId, feedback.attribute],
              set: { label: sql`excluded.label`, source: sql`excluded.source`, updatedAt: sql`excluded.updated_at` },
              setWhere: sql`${feedback.updatedAt} <= excluded.updated_at`,
            })
            // xmax = 0 on the returned row version means it was inserted, not updated.
            .returning({ predictionId: feedback.predictionId, attribute: feedback.attribute, inserted: sql<boolean>`(xmax = 0)` });
          const byKey = new Map(written.map((w) => [keyOf(w), w.inserted]));
          for (const index of chunk) {
            const { predictionId } = items[index];
            const attribute = attributeOfItem(items[index]);
            const inserted = byKey.get(keyOf(items[index]));
            results[index] =
              inserted === undefined
                ? { predictionId, attribute, status: 'updated', superseded: true }
                : { predictionId, attribute, status: inserted ? 'stored' : 'updated' };
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

    async thresholdOverrides(bundleVersion, attribute = DEFAULT_ATTRIBUTE) {
      return (await attributeOverrides(bundleVersion, attribute))[attribute] ?? {};
    },

    attributeOverrides: (bundleVersion) => attributeOverrides(bundleVersion),

    async recordAdminEvent(event) {
      const [row] = await db.insert(adminEvents).values(event).returning();
      return row;
    },

    async listAdminEvents(options = {}) {
      return db.select().from(adminEvents).orderBy(desc(adminEvents.createdAt), desc(adminEvents.id)).limit(options.limit ?? 100);
    },

    async listThresholdChanges(options = {}) {
      const conditions: SQL[] = [];
      if (options.language) conditions.push(eq(thresholdChanges.language, options.language));
      if (options.attribute) conditions.push(eq(thresholdChanges.attribute, options.attribute));
      return db
        .select()
        .from(thresholdChanges)
        .where(conditions.length > 0 ? and(...conditions) : undefined)
        .orderBy(desc(thresholdChanges.createdAt), desc(thresholdChanges.id))
        .limit(options.limit ?? 100);
    },

    async confusionByLanguage(from, to, language, options = {}) {
      const a = attributeOf(options.attribute);
      const conditions: SQL[] = [gte(predictions.createdAt, from), lt(predictions.createdAt, to), a.present];
      if (language !== undefined) conditions.push(eq(predictions.language, language));
      const count = (filter: SQL) => sql<number>`count(*) filter (where ${filter})`.mapWith(Number);
      return db
        .select({
          language: predictions.language,
          tp: count(sql`${a.label} and ${feedback.label}`),
          fp: count(sql`${a.label} and not ${feedback.label}`),
          fn: count(sql`not ${a.label} and ${feedback.label}`),
          tn: count(sql`not ${a.label} and not ${feedback.label}`),
        })
        .from(predictions)
        .innerJoin(feedback, and(eq(feedback.predictionId, predictions.id), eq(feedback.attribute, a.name)))
        .where(and(...conditions))
        .groupBy(predictions.language)
        .orderBy(asc(predictions.language));
    },

    async predictionForText(textSha256, since, options = {}) {
      const rows = await db
        .select({ id: predictions.id, labeled: sql<boolean>`(${feedback.predictionId} is not null)` })
        .from(predictions)
        .leftJoin(feedback, and(eq(feedback.predictionId, predictions.id), eq(feedback.attribute, attributeOf(options.attribute).name)))
        .where(and(eq(predictions.textSha256, textSha256), gte(predictions.createdAt, since)))
        .orderBy(sql`(${feedback.predictionId} is not null)`, desc(predictions.createdAt), desc(predictions.id))
        .limit(1000);
      return rows.length === 0 ? null : { id: rows[0].id, candidates: rows.length };
    },

    async feedbackTotals(options = {}) {
      const rows = await db
        .select({ language: predictions.language, n: sql<number>`count(*)`.mapWith(Number) })
        .from(feedback)
        .innerJoin(predictions, eq(predictions.id, feedback.predictionId))
        .where(eq(feedback.attribute, attributeOf(options.attribute).name))
        .groupBy(predictions.language);
      return Object.fromEntries(rows.map((r) => [r.language, r.n]));
    },

    async saveF1Windows(rows) {
      if (rows.length === 0) return;
      await db
        .insert(f1Windows)
        .values(rows as NewF1Window[])
        .onConflictDoUpdate({
          target: [f1Windows.attribute, f1Windows.language, f1Windows.windowStart, f1Windows.windowEnd],
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

    async latestF1Windows(language, options = {}) {
      const conditions: SQL[] = [eq(f1Windows.attribute, attributeOf(options.attribute).name)];
      if (language !== undefined) conditions.push(eq(f1Windows.language, language));
      return db
        .selectDistinctOn([f1Windows.language])
        .from(f1Windows)
        .where(and(...conditions))
        .orderBy(asc(f1Windows.language), desc(f1Windows.windowEnd), desc(f1Windows.computedAt));
    },

    async labeledScores(from, to, options = {}) {
      const a = attributeOf(options.attribute);
      const conditions: SQL[] = [gte(predictions.createdAt, from), lt(predictions.createdAt, to), a.present];
      if (options.language !== undefined) conditions.push(eq(predictions.language, options.language));
      return db
        .select({ language: predictions.language, score: a.score, predicted: a.label, truth: feedback.label, createdAt: predictions.createdAt })
        .from(predictions)
        .innerJoin(feedback, and(eq(feedback.predictionId, predictions.id), eq(feedback.attribute, a.name)))
        .where(and(...conditions))
        .orderBy(desc(predictions.createdAt), desc(predictions.id))
        .limit(options.limit ?? 50_000);
    },

    async scoreBins(from, to, bins, options = {}) {
      if (!Number.isInteger(bins) || bins < 1 || bins > 1000) throw new ToxScopeError('validation', `scoreBins: bins must be an integer in [1, 1000], got ${bins}`);
      const a = attributeOf(options.attribute);
      const bin = sql<number>`least(greatest(floor(${a.score} * ${bins}), 0), ${bins - 1})::int`.mapWith(Number);
      return db
        .select({ language: predictions.language, bin, truth: feedback.label, n: sql<number>`count(*)`.mapWith(Number) })
        .from(predictions)
        .leftJoin(feedback, and(eq(feedback.predictionId, predictions.id), eq(feedback.attribute, a.name)))
        .where(and(gte(predictions.createdAt, from), lt(predictions.createdAt, to), a.present))
        .groupBy(predictions.language, sql`2`, feedback.label)
        .orderBy(asc(predictions.language), sql`2`);
    },

    async f1WindowHistory(since, options = {}) {
      const conditions: SQL[] = [gte(f1Windows.windowEnd, since), eq(f1Windows.attribute, attributeOf(options.attribute).name)];
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
