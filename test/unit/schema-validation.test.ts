import { describe, expect, it } from 'vitest';
import { DispatchError } from '../../src/domain/errors.ts';
import { validateAgainstSchema } from '../../src/domain/schema-validation.ts';

/** Tiny, and exponential in the data's depth: each level tries both branches of the anyOf. */
const EXPONENTIAL = JSON.stringify({
  $defs: {
    n: {
      anyOf: [
        { type: 'array', items: { $ref: '#/$defs/n' } },
        { type: 'array', items: { $ref: '#/$defs/n' } },
        { const: 'y' },
      ],
    },
  },
  $ref: '#/$defs/n',
});
/** 2^25 paths: minutes on one thread (2^18 took 2.3 s here). */
const DEEP = JSON.stringify(JSON.parse(`${'['.repeat(25)}"x"${']'.repeat(25)}`));
const INVOICE = JSON.stringify({
  type: 'object',
  properties: { id: { type: 'string', pattern: '^inv_' }, amount: { type: 'integer' } },
  required: ['id'],
});

const timedOut = (promise: Promise<unknown>) =>
  promise.then(
    () => 'answered',
    (error) => (error instanceof DispatchError ? error.code : String(error)),
  );

describe('schema checks on worker threads', () => {
  it('each of many concurrent checks gets its own answer (batched per workspace)', async () => {
    const results = await Promise.all(
      Array.from({ length: 500 }, (_, i) =>
        validateAgainstSchema(
          `ws-${i % 3}`,
          'invoice:1',
          INVOICE,
          JSON.stringify(i % 2 ? { id: `inv_${i}`, amount: i } : { id: `bad_${i}` }),
        ),
      ),
    );
    results.forEach((problems, i) => {
      if (i % 2) expect(problems).toEqual([]);
      else expect(problems.map((p) => p.path)).toEqual(['/id']);
    });
  });

  it("a check that runs out of time answers VALIDATION_TIMEOUT; another workspace's checks are not held behind it", async () => {
    const order: string[] = [];
    const slow = [1, 2, 3].map(() =>
      timedOut(validateAgainstSchema('ws-slow', 'exp:1', EXPONENTIAL, DEEP)).then((outcome) => {
        order.push('slow');
        return outcome;
      }),
    );
    // The slow workspace's checks hold at most one of the two threads; the other serves the rest in turn.
    const fast = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        validateAgainstSchema('ws-fast', 'invoice:1', INVOICE, JSON.stringify({ id: `inv_${i}` })),
      ),
    );
    order.push('fast');
    expect(fast.every((problems) => problems.length === 0)).toBe(true);
    expect(await Promise.all(slow)).toEqual(['VALIDATION_TIMEOUT', 'VALIDATION_TIMEOUT', 'VALIDATION_TIMEOUT']);
    // Three time limits one after the other (2 s each); the other workspace is not behind them.
    expect(order.indexOf('fast')).toBeLessThan(order.lastIndexOf('slow'));
  });

  it('a slow check batched with quick ones of its workspace fails alone; the quick ones are answered', async () => {
    const checks = Array.from({ length: 20 }, (_, i) =>
      i === 7
        ? timedOut(validateAgainstSchema('ws-mixed', 'exp:1', EXPONENTIAL, DEEP))
        : timedOut(validateAgainstSchema('ws-mixed', 'invoice:1', INVOICE, JSON.stringify({ id: `inv_${i}` }))),
    );
    const outcomes = await Promise.all(checks);
    expect(outcomes[7]).toBe('VALIDATION_TIMEOUT');
    expect(outcomes.filter((o) => o === 'answered')).toHaveLength(19);
  });
});
