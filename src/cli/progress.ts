/** A progress line on stderr: redrawn in place on a terminal, one line per 10% otherwise (logs, CI). */
export interface ProgressReporter {
  update(stage: string, done: number, total: number): void;
  done(): void;
}

export function progressBar(write: (s: string) => void, isTty = Boolean(process.stderr.isTTY)): ProgressReporter {
  const started = performance.now();
  let lastDecile = -1;
  let lastStage = '';
  let drawn = false;
  return {
    update(stage, done, total) {
      const frac = total === 0 ? 1 : done / total;
      const secs = (performance.now() - started) / 1000;
      const eta = frac > 0 && frac < 1 ? ` eta ${Math.round((secs / frac) * (1 - frac))}s` : '';
      const width = 30;
      const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
      const line = `${stage} [${bar}] ${done}/${total} ${(frac * 100).toFixed(0)}% ${secs.toFixed(0)}s${eta}`;
      if (isTty) {
        write(`\r${line}\x1b[K`);
        drawn = true;
      } else {
        const decile = Math.floor(frac * 10);
        if (decile !== lastDecile || stage !== lastStage) write(`${line}\n`);
        lastDecile = decile;
        lastStage = stage;
      }
    },
    done() {
      if (isTty && drawn) write('\n');
      drawn = false;
    },
  };
}
