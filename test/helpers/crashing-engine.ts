/**
 * A real engine worker that dies on a given text, for the quarantine tests: whenever a batch holds the text's
 * tokens, the worker thread is terminated and the batch sent to it, so the batch is in flight when the thread
 * exits (a real death, as test/engine-worker-death.test.ts produces one). A test-only wrapper around WorkerEngine: production code has
 * no such switch.
 */
import type { Worker } from 'node:worker_threads';
import type { TopKRunner } from '../../src/engine/classifier.js';
import type { WorkerEngine } from '../../src/engine/engine-worker.js';
import type { Padding } from '../../src/engine/padding.js';
import type { TextPreparer } from '../../src/engine/text-worker.js';

/** How often batches holding the poison reached an engine (each one killed it), across restarts. */
export interface PoisonTally {
  batches: number;
}

/** `engine`, whose worker dies whenever a batch row holds the tokens of `poison` (tokenized as requests are). */
export async function crashingOn(engine: WorkerEngine, text: TextPreparer, poison: string, tally: PoisonTally): Promise<TopKRunner> {
  const [{ ids: marker }] = await text.prepare({ texts: [poison], hints: [null], maxTokens: 100_000 });
  const worker = (engine as unknown as { worker: Worker }).worker;
  return {
    runTopK(ids: number[][], padding?: Padding) {
      if (ids.some((row) => holds(row, marker))) {
        tally.batches++;
        // terminated first, then sent: the thread is gone before it could answer (a tiny model's forward pass
        // would otherwise win the race), and its exit fails the batch, as a crash while scoring it does
        void worker.terminate();
      }
      return engine.runTopK(ids, padding);
    },
    close: () => engine.close(),
    failure: () => engine.failure(),
  };
}

function holds(row: readonly number[], run: readonly number[]): boolean {
  outer: for (let i = 0; i + run.length <= row.length; i++) {
    for (let j = 0; j < run.length; j++) if (row[i + j] !== run[j]) continue outer;
    return true;
  }
  return false;
}
