import { describe, expect, it } from 'vitest';
import { createGroupCommit } from '../../src/db/group-commit.ts';

/** A write that the test finishes by hand, to hold a batch "in flight". */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

describe('group commit', () => {
  it('writes a lone item at once, and the items that arrive meanwhile together in the next batch', async () => {
    const batches: number[][] = [];
    const first = gate();
    const write = createGroupCommit<number, string>({
      maxBatch: 100,
      writeBatch: async (items) => {
        batches.push(items);
        if (batches.length === 1) await first.opened;
        return items.map((n) => `done ${n}`);
      },
      writeAlone: async () => {
        throw new Error('not expected');
      },
    });
    const one = write(1);
    const rest = [2, 3, 4].map(write);
    expect(batches).toEqual([[1]]);
    first.open();
    expect(await one).toBe('done 1');
    expect(await Promise.all(rest)).toEqual(['done 2', 'done 3', 'done 4']);
    expect(batches).toEqual([[1], [2, 3, 4]]);
  });

  it('caps a batch at maxBatch', async () => {
    const sizes: number[] = [];
    const first = gate();
    const write = createGroupCommit<number, number>({
      maxBatch: 3,
      writeBatch: async (items) => {
        sizes.push(items.length);
        if (sizes.length === 1) await first.opened;
        return items;
      },
      writeAlone: async (n) => n,
    });
    const all = Array.from({ length: 8 }, (_, i) => write(i));
    first.open();
    expect(await Promise.all(all)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(sizes).toEqual([1, 3, 3, 1]);
  });

  it('a batch that fails is written item by item, so only the bad item fails', async () => {
    const failed: number[] = [];
    const first = gate();
    let calls = 0;
    const write = createGroupCommit<number, number>({
      maxBatch: 100,
      writeBatch: async (items) => {
        if (++calls === 1) {
          await first.opened;
          return items;
        }
        throw new Error('batch failed');
      },
      writeAlone: async (n) => {
        if (n === 3) throw new Error(`item ${n} is bad`);
        return n * 10;
      },
      onBatchFailed: (_error, size) => failed.push(size),
    });
    const lone = write(1);
    const batch = [2, 3, 4].map((n) =>
      write(n).then(
        (v) => ({ ok: v }),
        (e: Error) => ({ error: e.message }),
      ),
    );
    first.open();
    expect(await lone).toBe(1);
    expect(await Promise.all(batch)).toEqual([{ ok: 20 }, { error: 'item 3 is bad' }, { ok: 40 }]);
    expect(failed).toEqual([3]);
  });
});
