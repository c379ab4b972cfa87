import { afterEach, describe, expect, it, vi } from 'vitest';
import { type ClaimedTry, type DeliverDeps, sendTry, WorkspaceShares } from '../../src/delivery/deliver.ts';
import { createAnalyzer, statisticsStale } from '../../src/delivery/queue.ts';
import { startWorker } from '../../src/delivery/worker.ts';
import { createLogger } from '../../src/logger.ts';
import { generateSecret } from '../../src/webhooks/signing.ts';

afterEach(() => {
  vi.useRealTimers();
});

describe('a fetch is capped at the workspaces headroom', () => {
  it('takes a whole share while no workspace runs, then the least room left below a share', () => {
    const shares = new WorkspaceShares(8);
    expect(shares.headroom()).toBe(8);
    for (let i = 0; i < 5; i++) shares.start('ws_a', 'ep_a');
    expect(shares.headroom()).toBe(3);
    for (let i = 0; i < 7; i++) shares.start('ws_b', 'ep_b');
    expect(shares.headroom()).toBe(1);
    // A workspace at its share is skipped by the fetch, so it does not cap it.
    shares.start('ws_b', 'ep_b');
    expect(shares.headroom()).toBe(3);
    expect(shares.skipped()).toEqual(['ep_b']);
  });

  it("remembers a workspace's endpoints after its tries end, so at its share again all of them are skipped", () => {
    const shares = new WorkspaceShares(2);
    shares.start('ws_a', 'ep_1');
    shares.start('ws_a', 'ep_2');
    expect(shares.skipped()).toEqual(['ep_1', 'ep_2']);
    shares.end('ws_a');
    shares.end('ws_a');
    expect(shares.skipped()).toEqual([]);
    // Its next tries go to one endpoint; the fetch must still skip the other.
    shares.start('ws_a', 'ep_1');
    shares.start('ws_a', 'ep_1');
    expect(shares.skipped()).toEqual(['ep_1', 'ep_2']);
  });
});

describe("a try holds its workspace's share while it waits on the endpoint, not while it is recorded", () => {
  it('leaves the share when the endpoint answers, before the settle, and says when the workspace was at its share', async () => {
    const shares = new WorkspaceShares(2);
    shares.start('ws_a', 'ep_1');
    shares.start('ws_a', 'ep_1');
    let answer!: () => void;
    const answered = new Promise<void>((resolve) => {
      answer = resolve;
    });
    let settle!: () => void;
    const settled = new Promise<void>((resolve) => {
      settle = resolve;
    });
    let settling = false;
    const freed = vi.fn();
    const deps = {
      shares,
      onShareFreed: freed,
      logger: createLogger('silent'),
      sender: {
        send: async () => {
          await answered;
          return { ok: true, statusCode: 200, responseBody: '', durationMs: 1 };
        },
        close: async () => undefined,
      },
      settler: {
        succeeded: async () => {
          settling = true;
          await settled;
          return {};
        },
      },
    } as unknown as DeliverDeps;
    const loaded = {
      deliveryId: 'dlv_1',
      workspaceId: 'ws_a',
      appId: 'app_1',
      recipientId: 'rcp_1',
      messageId: 'msg_1',
      endpointId: 'ep_1',
      messageUid: 'uid_1',
      eventType: 'user.created',
      dataJson: '{}',
      messageCreatedMs: Date.now(),
      url: 'http://127.0.0.1:9/hook',
      headers: null,
      secrets: [generateSecret()],
      attemptTimeoutMs: 1000,
      ordering: 'NONE',
    };
    const claimed = {
      job: { id: 'job_1', retryCount: 0, trigger: 'SCHEDULED' },
      send: { loaded, attemptId: 'att_1' },
    } as unknown as ClaimedTry;
    const sent = sendTry(deps, claimed);
    await Promise.resolve();
    // Waiting on the endpoint: counted.
    expect(shares.running.get('ws_a')).toBe(2);
    answer();
    await vi.waitFor(() => expect(settling).toBe(true));
    // Answered, being recorded: no longer the workspace's, and the worker was told.
    expect(shares.running.get('ws_a')).toBe(1);
    expect(freed).toHaveBeenCalledTimes(1);
    settle();
    await sent;
    // Counted once.
    expect(shares.running.get('ws_a')).toBe(1);
    expect(shares.end('ws_a')).toBe(false);
    expect(shares.running.has('ws_a')).toBe(false);
  });
});

describe('fetches pause while only workspaces at their share have work', () => {
  it('holds off after a skipping fetch found nothing, until the pause ends or the workspaces at their share change', () => {
    const shares = new WorkspaceShares(2);
    shares.start('ws_a', 'ep_1');
    shares.start('ws_a', 'ep_1');
    expect(shares.holdingOff(1_000)).toBe(false);
    expect(shares.foundNothing(1_000, shares.atShare())).toBe(1_100);
    expect(shares.holdingOff(1_050)).toBe(true);
    expect(shares.holdingOff(1_100)).toBe(false);
    // A slot of theirs freeing: fetch again at once.
    shares.end('ws_a');
    expect(shares.holdingOff(1_050)).toBe(false);
    // Another workspace reaching its share too: the old finding says nothing of it.
    shares.start('ws_a', 'ep_1');
    shares.start('ws_b', 'ep_2');
    shares.start('ws_b', 'ep_2');
    expect(shares.holdingOff(1_050)).toBe(false);
  });

  it('pauses for the workspaces that were at their share when the fetch began, though tries answered meanwhile took them below it', () => {
    const shares = new WorkspaceShares(2);
    shares.start('ws_a', 'ep_1', 'app_a');
    shares.start('ws_a', 'ep_1', 'app_a');
    const skipped = shares.atShare();
    expect(skipped).toEqual(['ws_a']);
    // During the fetch both tries were answered.
    shares.end('ws_a');
    shares.end('ws_a');
    shares.foundNothing(1_000, skipped);
    // Below its share: the next fetch skips nothing and goes ahead.
    expect(shares.holdingOff(1_050)).toBe(false);
    // At its share again within the pause: held off, and its own new work does not end that.
    shares.start('ws_a', 'ep_1', 'app_a');
    shares.start('ws_a', 'ep_1', 'app_a');
    expect(shares.holdingOff(1_050)).toBe(true);
    expect(shares.newWork(['app_a'], 1_050)).toBe(false);
  });

  it('holds off for the same workspaces at their share whatever order they reached it in', () => {
    const shares = new WorkspaceShares(1);
    shares.start('ws_a', 'ep_1');
    shares.start('ws_b', 'ep_2');
    shares.foundNothing(1_000, shares.atShare());
    // ws_a's try ends and another starts: the same two are at their share, ws_a now listed last.
    shares.end('ws_a');
    shares.start('ws_a', 'ep_1');
    expect(shares.atShare()).toEqual(['ws_b', 'ws_a']);
    expect(shares.holdingOff(1_050)).toBe(true);
  });

  it('never holds off with no workspace at its share', () => {
    const shares = new WorkspaceShares(2);
    shares.foundNothing(10_000, shares.atShare());
    expect(shares.holdingOff(10_000)).toBe(false);
  });

  it('pauses longer after each skipping fetch in a row that found nothing, up to 400 ms, and from the start again after one that found work', () => {
    const shares = new WorkspaceShares(1);
    shares.start('ws_a', 'ep_1');
    const pauses = [0, 1, 2, 3, 4].map((i) => shares.foundNothing(i * 1_000, shares.atShare()) - i * 1_000);
    expect(pauses).toEqual([100, 200, 400, 400, 400]);
    shares.foundWork();
    expect(shares.foundNothing(10_000, shares.atShare())).toBe(10_100);
  });

  it('ends the pause when another workspace commits work in this process, not when the workspace at its share does', () => {
    const shares = new WorkspaceShares(1);
    shares.start('ws_a', 'ep_1', 'app_a');
    shares.foundNothing(1_000, shares.atShare());
    shares.foundNothing(2_000, shares.atShare());
    expect(shares.holdingOff(2_100)).toBe(true);
    // Its own new messages: the pause holds, even while a slot of its own is free for a moment.
    expect(shares.newWork(['app_a'], 2_100)).toBe(false);
    shares.end('ws_a');
    expect(shares.newWork(['app_a'], 2_100)).toBe(false);
    shares.start('ws_a', 'ep_1', 'app_a');
    expect(shares.holdingOff(2_100)).toBe(true);
    // An app not seen here (another workspace's, or one whose workspace is not known yet): fetch now.
    expect(shares.newWork(['app_a', 'app_b'], 2_100)).toBe(true);
    expect(shares.holdingOff(2_100)).toBe(false);
    // And the next pause starts short again.
    expect(shares.foundNothing(3_000, shares.atShare())).toBe(3_100);
    // A known app of a workspace that was not at its share ends it too.
    shares.start('ws_b', 'ep_2', 'app_c');
    shares.end('ws_b');
    expect(shares.newWork(['app_c'], 3_050)).toBe(true);
    // No pause: nothing to end.
    expect(shares.newWork(['app_b'], 3_050)).toBe(false);
  });
});

describe('the queue partition is analyzed after many jobs', () => {
  it('once per 5,000 jobs, after a short delay, at most every 5 s, never two at once', async () => {
    vi.useFakeTimers();
    let runs = 0;
    let finish: (() => void) | undefined;
    const analyzer = createAnalyzer(
      () =>
        new Promise<undefined>((resolve) => {
          runs++;
          finish = () => resolve(undefined);
        }),
      (error) => {
        throw error;
      },
    );
    analyzer.note(4_999);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(runs).toBe(0);
    analyzer.note(1);
    expect(runs).toBe(0);
    await vi.advanceTimersByTimeAsync(300);
    expect(runs).toBe(1);
    // Running: more jobs wait for it.
    analyzer.note(10_000);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(runs).toBe(1);
    finish!();
    await vi.advanceTimersByTimeAsync(0);
    // 1.3 s after the last one started: the next waits for the 5 s.
    analyzer.note(1);
    await vi.advanceTimersByTimeAsync(3_000);
    expect(runs).toBe(1);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(runs).toBe(2);
    finish!();
    await analyzer.stop();
  });
});

describe('a partition holding a large backlog is analyzed less often', () => {
  it('waits for 10 % of the rows the last ANALYZE counted, when that is more than 5,000 jobs', async () => {
    vi.useFakeTimers();
    let runs = 0;
    const analyzer = createAnalyzer(
      async () => {
        runs++;
        return 200_000;
      },
      (error) => {
        throw error;
      },
    );
    analyzer.note(5_000);
    await vi.advanceTimersByTimeAsync(300);
    expect(runs).toBe(1);
    // The partition holds 200,000 jobs: 5,000 more do not call for another.
    analyzer.note(5_000);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(runs).toBe(1);
    analyzer.note(15_000);
    await vi.advanceTimersByTimeAsync(300);
    expect(runs).toBe(2);
    await analyzer.stop();
  });
});

describe("PostgreSQL's count of changed rows decides", () => {
  it('an ANALYZE is due after 5,000 changed rows, or 10 % of the rows counted when that is more', () => {
    expect(statisticsStale({ rows: 0, changed: 4_999 })).toBe(false);
    expect(statisticsStale({ rows: 0, changed: 5_000 })).toBe(true);
    // A 200,000-job backlog another process inserted and analyzed.
    expect(statisticsStale({ rows: 200_000, changed: 5_000 })).toBe(false);
    expect(statisticsStale({ rows: 200_000, changed: 20_000 })).toBe(true);
    // Never analyzed, or no statistics.
    expect(statisticsStale({ rows: -1, changed: 0 })).toBe(true);
    expect(statisticsStale({ rows: 100, changed: null })).toBe(true);
  });
});

describe('heartbeats', () => {
  it('touch only jobs running for at least a heartbeat interval', async () => {
    vi.useFakeTimers();
    const touched: string[][] = [];
    const release = new Map<string, () => void>();
    const queue = ['short', 'long'];
    const worker = startWorker<string>({
      name: 'test',
      logger: createLogger('silent'),
      concurrency: 10,
      heartbeatMs: 1_000,
      pollIntervalMs: 100,
      source: {
        take: async () => queue.splice(0, 1),
        key: (job) => job,
        fail: async () => undefined,
        touch: async (jobs) => {
          touched.push([...jobs]);
        },
      },
      handler: (job) =>
        new Promise<void>((resolve) => {
          release.set(job, resolve);
        }),
    });
    await vi.advanceTimersByTimeAsync(50);
    expect(release.has('short')).toBe(true);
    // 'long' is taken at the next poll (100 ms in); 'short' ends at 500 ms.
    await vi.advanceTimersByTimeAsync(450);
    release.get('short')!();
    await vi.advanceTimersByTimeAsync(550);
    // At 1 s: 'long' has run 0.9 s: not yet.
    expect(touched).toEqual([]);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(touched).toEqual([['long']]);
    release.get('long')!();
    await worker.stop();
  });
});
