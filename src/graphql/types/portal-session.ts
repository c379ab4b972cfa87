import { type CreatedPortalSession, createPortalSession, revokePortalSessions } from '../../domain/portal-sessions.ts';
import { builder } from '../builder.ts';

const PortalSession = builder.objectRef<CreatedPortalSession>('PortalSession').implement({
  description: 'A short-lived link to the portal for one recipient. The token is shown once.',
  fields: (t) => ({
    url: t.exposeString('url', { description: 'The portal URL, with the token in its fragment.' }),
    token: t.exposeString('token'),
    expiresAt: t.expose('expiresAt', { type: 'DateTime' }),
  }),
});

const CreatePortalSessionInput = builder.inputType('CreatePortalSessionInput', {
  fields: (t) => ({
    appId: t.id({ required: true }),
    recipientId: t.string({ required: true }),
    expiresInSeconds: t.int({ description: 'From 1 to 604800 (7 days); default 3600.' }),
  }),
});

const RevokePortalSessionsInput = builder.inputType('RevokePortalSessionsInput', {
  fields: (t) => ({ appId: t.id({ required: true }), recipientId: t.string({ required: true }) }),
});

builder.mutationFields((t) => ({
  createPortalSession: t.field({
    type: PortalSession,
    authScopes: { operator: true },
    args: { input: t.arg({ type: CreatePortalSessionInput, required: true }) },
    resolve: (_root, { input: { recipientId, ...input } }, ctx) =>
      createPortalSession(ctx.domain, { ...input, recipientUid: recipientId }),
  }),
  revokePortalSessions: t.int({
    description: 'Revokes every live portal session of a recipient; returns how many.',
    authScopes: { operator: true },
    args: { input: t.arg({ type: RevokePortalSessionsInput, required: true }) },
    resolve: (_root, { input: { recipientId, ...input } }, ctx) =>
      revokePortalSessions(ctx.domain, { ...input, recipientUid: recipientId }),
  }),
}));
