/** The queue's wire format: what a request may hold, what is refused (and dead-lettered), and the derived ids. */
import { describe, expect, it } from 'vitest';
import { deadLetter, parseQueueRequest, predictionIds } from '../src/queue/message.js';

const bytes = (v: unknown) => new TextEncoder().encode(typeof v === 'string' ? v : JSON.stringify(v));
const refusal = (v: unknown) => {
  try {
    parseQueueRequest(bytes(v));
  } catch (e) {
    return (e as Error).message;
  }
  return 'accepted';
};

describe('queue requests', () => {
  it('accepts one text or a batch, with a caller id, language hints and attributes', () => {
    expect(parseQueueRequest(bytes({ text: 'hello' }))).toEqual({ callerId: null, texts: ['hello'], language: undefined, replyTo: null });
    expect(parseQueueRequest(bytes({ texts: ['a', 'b'], id: 'post-1', language: ['en', null], attributes: ['insult'], reply_to: 'inbox.7' }))).toEqual({
      callerId: 'post-1', texts: ['a', 'b'], language: ['en', null], replyTo: 'inbox.7', attributes: ['insult'],
    });
  });

  it('refuses what no retry can fix, saying what is wrong', () => {
    expect(refusal('{"texts": "not a list"')).toMatch(/not UTF-8 JSON/);
    expect(refusal({ texts: 'x' })).toMatch(/texts/);
    expect(refusal({ text: 'a', texts: ['b'] })).toMatch(/exactly one of "text" and "texts"/);
    expect(refusal({})).toMatch(/exactly one of/);
    expect(refusal({ text: 'a', extra: 1 })).toMatch(/extra/);
    expect(refusal({ text: 'a', attributes: [] })).toMatch(/attributes must name at least one attribute/);
    expect(refusal({ text: 'a', attributes: [''] })).toMatch(/attributes\.0/);
    expect(refusal({ texts: ['a', 'b'], language: ['en'] })).toMatch(/1 codes for 2 texts/);
    expect(refusal({ text: 'a', id: 'has space' })).toMatch(/id/);
    expect(refusal({ text: 'a', reply_to: 'inbox.*' })).toMatch(/reply_to/);
    expect(() => parseQueueRequest(Uint8Array.of(0xff, 0xfe))).toThrow(/not UTF-8 JSON/);
  });
});

describe('prediction ids', () => {
  it('derive from the stream sequence, or from the caller id, so a redelivery gets the same ids', () => {
    const origin = { stream: 'S', streamSeq: 42 };
    expect(predictionIds({ callerId: null, texts: ['a', 'b'] }, origin)).toEqual(['nats:S:42:0', 'nats:S:42:1']);
    expect(predictionIds({ callerId: 'post-1', texts: ['a'] }, { stream: 'S', streamSeq: 99 })).toEqual(['q:post-1:0']);
    expect(predictionIds({ callerId: null, texts: ['a'] }, origin)).toEqual(predictionIds({ callerId: null, texts: ['a'] }, origin));
  });
});

describe('dead letters', () => {
  it('carry the error and the message as received (base64 when it is not UTF-8)', () => {
    const letter = deadLetter({ kind: 'validation', message: 'bad' }, { subject: 's', data: Uint8Array.of(0xff), deliveries: 1, stream: 'S', streamSeq: 3 });
    expect(letter).toEqual({ error: { kind: 'validation', message: 'bad' }, stream: 'S', stream_seq: 3, subject: 's', deliveries: 1, data: '/w==', encoding: 'base64' });
  });
});
