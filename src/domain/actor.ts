/** Who a request acts as: an operator's API key, or a customer's portal session. */
export type Actor =
  | { kind: 'operator'; workspaceId: string; apiKeyId: string }
  | {
      kind: 'portal';
      workspaceId: string;
      appId: string;
      recipientId: string;
      recipientUid: string;
      sessionId: string;
    };

export type OperatorActor = Extract<Actor, { kind: 'operator' }>;
export type PortalActor = Extract<Actor, { kind: 'portal' }>;
