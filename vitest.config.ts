import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // Engine tests build ONNX graphs and hold sessions: two workers match the two cores here.
    maxWorkers: 2,
    pool: 'forks',
  },
});
