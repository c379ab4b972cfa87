import { MessageChannel } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { badInput, DispatchError } from './errors.ts';
import { checkSchemaShape, type SchemaProblem } from './json-schema.ts';
import type { SchemaTask, ValidateOutcome } from './schema-worker.ts';

/**
 * Event type schemas are compiled and checked on worker threads, never on the
 * API's event loop: a large schema against a large payload took seconds
 * (1,100 patterns in an `anyOf` against 1 MB: 8.7 s; a `format: regex` or
 * `email` over 1 MiB: up to 1.8 s), during which every tenant waited.
 *
 * - A check may hold a worker thread at most SCHEMA_TIME_LIMIT ms; then the
 *   thread is stopped and the send answers VALIDATION_TIMEOUT.
 * - Checks wait in one queue per workspace, served in turn, and one workspace
 *   holds at most one of the two threads: another workspace always finds one.
 * - A workspace whose check ran out of time has its checks run one at a time
 *   on a thread of their own for SLOW_LANE_MS, where it can only slow itself.
 * - Under load, the waiting checks of a workspace go to a thread as one task
 *   (at most BATCH_ITEMS of them), which keeps the cost of a thread round
 *   trip (about 0.1 ms of the event loop) off each message.
 */

/** Milliseconds of a worker thread one schema check (compiling or validating) may take. */
export const SCHEMA_TIME_LIMIT = 2_000;
const SLOW_LANE_MS = 10 * 60_000;
const BATCH_ITEMS = 64;
const BATCH_BYTES = 1024 * 1024;

/** A check's outcome: a worker's answer, or that it ran out of time. */
type Outcome = ValidateOutcome | { timedOut: true };

type Item =
  | { kind: 'compile'; schemaText: string }
  | { kind: 'validate'; key: string; schemaText: string; dataText: string };

interface Pending {
  workspaceId: string;
  item: Item;
  resolve: (outcome: Outcome) => void;
  reject: (error: unknown) => void;
}

class Lane {
  private pool: Piscina | null = null;
  private running = 0;
  private readonly queues = new Map<string, Pending[]>();
  /** Threads running each workspace's checks. */
  private readonly held = new Map<string, number>();

  private readonly threads: number;
  private readonly keepThreads: number;
  private readonly perWorkspace: number;

  /** Checks run one per task (the slow lane: any of them may run out of time). */
  private readonly alone: boolean;

  constructor(threads: number, keepThreads: number, alone: boolean) {
    this.alone = alone;
    this.threads = threads;
    this.keepThreads = keepThreads;
    this.perWorkspace = Math.max(1, threads - 1);
  }

  push(pending: Pending): void {
    const queue = this.queues.get(pending.workspaceId);
    if (queue) queue.push(pending);
    else this.queues.set(pending.workspaceId, [pending]);
    this.pump();
  }

  /** Removes and returns a workspace's waiting checks. */
  takeQueued(workspaceId: string): Pending[] {
    const queue = this.queues.get(workspaceId) ?? [];
    this.queues.delete(workspaceId);
    return queue;
  }

  private pump(): void {
    // The workspace waiting longest comes first in the map; after its turn it goes to the back.
    // One workspace holds at most perWorkspace threads, so another always finds one free.
    for (const [workspaceId, queue] of this.queues) {
      if (this.running >= this.threads) return;
      const held = this.held.get(workspaceId) ?? 0;
      if (held >= this.perWorkspace) continue;
      this.queues.delete(workspaceId);
      const batch = takeBatch(queue, this.alone);
      if (queue.length) this.queues.set(workspaceId, queue);
      this.running++;
      this.held.set(workspaceId, held + 1);
      void this.run(batch).finally(() => {
        this.running--;
        const left = this.held.get(workspaceId)! - 1;
        if (left) this.held.set(workspaceId, left);
        else this.held.delete(workspaceId);
        this.pump();
      });
    }
  }

  private async run(batch: Pending[]): Promise<void> {
    const first = batch[0]!.item;
    const { port1, port2 } = new MessageChannel();
    const task: SchemaTask =
      first.kind === 'compile'
        ? { kind: 'compile', schemaText: first.schemaText, started: port2 }
        : {
            kind: 'validate',
            items: batch.map(({ item }) => {
              const { key, schemaText, dataText } = item as Extract<Item, { kind: 'validate' }>;
              return { key, schemaText, dataText };
            }),
            started: port2,
          };
    const abort = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    port1.once('message', () => {
      timer = setTimeout(() => abort.abort(), SCHEMA_TIME_LIMIT);
      port1.close();
    });
    let result: ValidateOutcome[];
    try {
      result = await this.workers().run(task, { signal: abort.signal, transferList: [port2] });
    } catch (error) {
      if ((error as Error).name !== 'AbortError') {
        for (const pending of batch) pending.reject(error);
        return;
      }
      outOfTime(batch);
      return;
    } finally {
      clearTimeout(timer);
      port1.close();
    }
    for (const [i, outcome] of result.entries()) batch[i]!.resolve(outcome);
  }

  private workers(): Piscina {
    this.pool ??= new Piscina({
      filename: new URL('./schema-worker.ts', import.meta.url).href,
      minThreads: this.keepThreads,
      maxThreads: this.threads,
      idleTimeout: 60_000,
    });
    return this.pool;
  }
}

function takeBatch(queue: Pending[], alone: boolean): Pending[] {
  const first = queue.shift()!;
  if (alone || first.item.kind === 'compile') return [first];
  const batch = [first];
  let bytes = first.item.dataText.length;
  while (batch.length < BATCH_ITEMS && queue.length) {
    const next = queue[0]!;
    if (next.item.kind === 'compile') break;
    bytes += next.item.dataText.length;
    if (bytes > BATCH_BYTES) break;
    batch.push(queue.shift()!);
  }
  return batch;
}

const lanes = { normal: new Lane(2, 2, false), slow: new Lane(1, 0, true) };
const slowUntil = new Map<string, number>();

function enqueue(workspaceId: string, item: Item): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const until = slowUntil.get(workspaceId);
    const slow = until !== undefined && until > Date.now();
    if (until !== undefined && !slow) slowUntil.delete(workspaceId);
    (slow ? lanes.slow : lanes.normal).push({ workspaceId, item, resolve, reject });
  });
}

/**
 * A task ran out of time: its workspace goes to the slow lane, with the checks
 * it has waiting; a batch is tried again there item by item, so only the slow
 * item fails.
 */
function outOfTime(batch: Pending[]): void {
  const workspaceId = batch[0]!.workspaceId;
  slowUntil.set(workspaceId, Date.now() + SLOW_LANE_MS);
  if (batch.length === 1) {
    batch[0]!.resolve({ timedOut: true });
  } else {
    for (const pending of batch) lanes.slow.push(pending);
  }
  for (const pending of lanes.normal.takeQueued(workspaceId)) lanes.slow.push(pending);
}

/**
 * Rejects an event type's schema that is not a valid JSON Schema, too large,
 * uses a pattern RE2 cannot run, or takes longer than SCHEMA_TIME_LIMIT to
 * compile (BAD_USER_INPUT).
 */
export async function checkJsonSchema(workspaceId: string, schema: unknown): Promise<void> {
  const schemaText = checkSchemaShape(schema);
  const outcome = await enqueue(workspaceId, { kind: 'compile', schemaText });
  if ('timedOut' in outcome) {
    throw badInput(`schema takes longer than ${SCHEMA_TIME_LIMIT} ms to compile; make it smaller`);
  }
  if ('unusable' in outcome) throw badInput(`schema is not a valid JSON Schema: ${outcome.unusable}`);
}

/**
 * Checks data (as JSON text) against a schema (as JSON text) on a worker
 * thread; returns the problems (empty when valid). Compiled schemas are kept
 * per thread by `key` (an event type and its schema's version).
 */
export async function validateAgainstSchema(
  workspaceId: string,
  key: string,
  schemaText: string,
  dataText: string,
): Promise<SchemaProblem[]> {
  const outcome = await enqueue(workspaceId, { kind: 'validate', key, schemaText, dataText });
  if ('problems' in outcome) return outcome.problems;
  if ('timedOut' in outcome) {
    throw new DispatchError(
      'VALIDATION_TIMEOUT',
      `checking data against the event type's schema took longer than ${SCHEMA_TIME_LIMIT} ms; send smaller data or simplify the schema`,
      { limitMs: SCHEMA_TIME_LIMIT },
    );
  }
  // Saved before a rule it breaks (a pattern RE2 cannot run) was checked at save.
  throw badInput(`the event type's schema can no longer be used (${outcome.unusable}); create it again`);
}
