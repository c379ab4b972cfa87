import { setTimeout as sleep } from 'node:timers/promises';
import { Repeater } from 'graphql-yoga';
import type { Delivery, Message } from '../../db/client.ts';
import { notFound } from '../../domain/errors.ts';
import {
  type ReplayProgress,
  type ReplayRequested,
  recoverEndpoint,
  replayMessages,
  replayProgress,
  resendMessage,
} from '../../domain/replay.ts';
import { cancelScheduledMessage } from '../../domain/scheduled-messages.ts';
import { builder } from '../builder.ts';
import type { GraphQLContext } from '../context.ts';
import { DeliveryStatusEnum } from './enums.ts';
import { DeliveryRef, MessageRef } from './message.ts';

/** How often a replayProgress subscriber's counts are read again from the database. */
const REPLAY_PROGRESS_POLL_MS = 500;

const ResendMessageInput = builder.inputType('ResendMessageInput', {
  fields: (t) => ({
    appId: t.id({ required: true }),
    messageId: t.id({ required: true, description: "The message's id (msg_…) or the caller's messageId." }),
    endpointId: t.id({
      description: 'Only this endpoint; absent means every enabled endpoint that subscribes to the event type.',
    }),
  }),
});

const RecoverEndpointInput = builder.inputType('RecoverEndpointInput', {
  fields: (t) => ({
    endpointId: t.id({ required: true }),
    since: t.field({
      type: 'DateTime',
      required: true,
      description: 'Failed deliveries created at or after this time.',
    }),
    until: t.field({ type: 'DateTime', description: 'And before this time; default now.' }),
  }),
});

const RecoverPayload = builder.objectRef<{ queued: number }>('RecoverPayload').implement({
  fields: (t) => ({
    queued: t.exposeInt('queued', { description: 'Failed deliveries queued for a manual attempt.' }),
  }),
});

builder.mutationFields((t) => ({
  resendMessage: t.prismaField({
    type: ['Delivery'],
    description:
      'A manual attempt now, to one endpoint or to every subscribed enabled endpoint. A disabled endpoint is ENDPOINT_DISABLED.',
    args: { input: t.arg({ type: ResendMessageInput, required: true }) },
    resolve: async (query, _root, { input }, ctx) => {
      const deliveries = await resendMessage(ctx.domain, input);
      return ctx.domain.prisma.delivery.findMany({
        ...query,
        where: { id: { in: deliveries.map((d) => d.id) } },
        orderBy: { id: 'asc' },
      });
    },
  }),
  recoverEndpoint: t.field({
    type: RecoverPayload,
    description: 'Resends, as background work, every failed delivery of an endpoint created in a time window.',
    args: { input: t.arg({ type: RecoverEndpointInput, required: true }) },
    resolve: (_root, { input }, ctx) => recoverEndpoint(ctx.domain, input),
  }),
}));

const CancelScheduledMessageInput = builder.inputType('CancelScheduledMessageInput', {
  fields: (t) => ({
    appId: t.id({ required: true }),
    messageId: t.id({ required: true, description: "The message's id (msg_…) or the caller's messageId." }),
  }),
});

const CancelScheduledMessagePayload = builder
  .objectRef<{ message: Message; canceled: Delivery[] }>('CancelScheduledMessagePayload')
  .implement({
    fields: (t) => ({
      message: t.field({ type: MessageRef, resolve: (p) => p.message }),
      canceled: t.field({
        type: [DeliveryRef],
        description: 'The deliveries canceled now (CANCELED); empty when they were canceled before.',
        resolve: (p) => p.canceled,
      }),
    }),
  });

const ReplayMessagesInput = builder.inputType('ReplayMessagesInput', {
  fields: (t) => ({
    appId: t.id({ required: true }),
    recipientId: t.string({
      description: "Only this recipient's (the operator's id). A portal token replays only its own recipient's.",
    }),
    endpointId: t.id({ description: 'Only deliveries to this endpoint.' }),
    eventTypes: t.stringList({ description: 'Only messages of these event types; all when absent or empty.' }),
    status: t.field({
      type: DeliveryStatusEnum,
      description: 'FAILED or SUCCEEDED only; absent: both. Deliveries with a try pending are never replayed.',
    }),
    since: t.field({ type: 'DateTime', required: true, description: 'Messages created at or after this time.' }),
    until: t.field({ type: 'DateTime', description: 'And before this time; default now.' }),
    requestId: t.string({
      description:
        'Your id of this request: asking again with the same one (and the same filters) answers the same replay and queues nothing new.',
    }),
  }),
});

const ReplayMessagesPayload = builder.objectRef<ReplayRequested>('ReplayMessagesPayload').implement({
  fields: (t) => ({
    jobId: t.exposeID('jobId', { description: 'The replay (rpl_…): follow it with replayProgress(jobId).' }),
    count: t.exposeInt('count', { description: 'Deliveries that match: each gets one manual try.' }),
    deduplicated: t.exposeBoolean('deduplicated', {
      description: 'True when this requestId was used before: the earlier replay is answered.',
    }),
  }),
});

const ReplayProgressRef = builder.objectRef<ReplayProgress>('ReplayProgress').implement({
  description: "A bulk replay's progress (replayMessages).",
  fields: (t) => ({
    jobId: t.exposeID('jobId'),
    total: t.exposeInt('total', { description: 'Deliveries that matched when the replay was asked for.' }),
    queued: t.exposeInt('queued', { description: 'Manual tries queued so far.' }),
    skipped: t.exposeInt('skipped', {
      description: 'Matched deliveries not queued: by then a try was pending, or they no longer matched.',
    }),
    sent: t.exposeInt('sent', { description: 'Queued tries that started (in flight, succeeded or failed).' }),
    succeeded: t.exposeInt('succeeded'),
    failed: t.exposeInt('failed'),
    done: t.exposeBoolean('done', {
      description: 'Every matched delivery was gone through and every queued try ended.',
    }),
  }),
});

builder.mutationFields((t) => ({
  cancelScheduledMessage: t.field({
    type: CancelScheduledMessagePayload,
    description:
      'Cancels the tries of a scheduled message (sendMessage with deliverAt) that have not started: its SCHEDULED deliveries become CANCELED. ' +
      'A message whose tries started is NOT_CANCELABLE. A portal token may cancel its own messages.',
    args: { input: t.arg({ type: CancelScheduledMessageInput, required: true }) },
    resolve: (_root, { input }, ctx) => cancelScheduledMessage(ctx.domain, input),
  }),
  replayMessages: t.field({
    type: ReplayMessagesPayload,
    description:
      "Replays, as background work, the settled deliveries of an app's messages created in a time window: one manual try each, " +
      'narrowed by recipient, endpoint, event types and status (FAILED: "replay failed messages"). Answers at once with the count; ' +
      'follow it with replayProgress. Deliveries with a try pending are left alone, so replaying a window twice does not send twice. ' +
      'At most 10,000 deliveries per call (BAD_USER_INPUT beyond).',
    args: { input: t.arg({ type: ReplayMessagesInput, required: true }) },
    resolve: (_root, { input }, ctx) => {
      const { recipientId, ...rest } = input;
      return replayMessages(ctx.domain, { ...rest, recipientUid: recipientId });
    },
  }),
}));

builder.queryField('replay', (t) =>
  t.field({
    type: ReplayProgressRef,
    nullable: true,
    description: "A bulk replay's progress now (replayMessages' jobId).",
    args: { jobId: t.arg.id({ required: true }) },
    resolve: (_root, { jobId }, ctx) => replayProgress(ctx.domain, jobId),
  }),
);

/**
 * The progress, read again from the database every REPLAY_PROGRESS_POLL_MS
 * and sent when it changed, until done or the subscriber leaves (a Repeater
 * stops between two reads). Read from the database, not heard from the live
 * bus: the tries are made by any worker process and the counts are the
 * deliveries' statuses, so each reading is right whatever was missed; one
 * small indexed count per subscriber per poll.
 */
function followReplay(ctx: GraphQLContext, jobId: string): Repeater<ReplayProgress> {
  return new Repeater<ReplayProgress>(async (push, stop) => {
    let stopped = false;
    void stop.then(() => {
      stopped = true;
    });
    let last = '';
    while (!stopped) {
      const progress = await replayProgress(ctx.domain, jobId);
      if (!progress) throw notFound('replay');
      const text = JSON.stringify(progress);
      if (text !== last) {
        last = text;
        await push(progress);
      }
      if (progress.done) break;
      await Promise.race([sleep(REPLAY_PROGRESS_POLL_MS), stop]);
    }
    stop();
  });
}

builder.subscriptionField('replayProgress', (t) =>
  t.field({
    type: ReplayProgressRef,
    description:
      "A bulk replay's progress (replayMessages' jobId): sent at once, then whenever it changes (read every half second), ending once done.",
    args: { jobId: t.arg.id({ required: true }) },
    subscribe: (_root, { jobId }, ctx) => followReplay(ctx, jobId),
    resolve: (progress) => progress,
  }),
);
