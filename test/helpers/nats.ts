/** The NATS JetStream server these machines run (127.0.0.1:4222; .ci/run starts it where it is not running). */
import { connect } from '@nats-io/transport-node';

export const NATS_URL = process.env.TOXSCOPE_TEST_NATS_URL || 'nats://127.0.0.1:4222';

/** Whether a JetStream-enabled server answers; tests that need one are skipped, and say so, otherwise. */
export async function natsAvailable(): Promise<boolean> {
  try {
    const nc = await connect({ servers: NATS_URL, timeout: 2000, maxReconnectAttempts: 0 });
    try {
      const { jetstreamManager } = await import('@nats-io/jetstream');
      await (await jetstreamManager(nc)).getAccountInfo();
      return true;
    } finally {
      await nc.close();
    }
  } catch (e) {
    console.warn(`NATS JetStream not reachable at ${NATS_URL} (${(e as Error).message}): the queue tests are skipped`);
    return false;
  }
}
