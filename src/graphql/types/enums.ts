import { builder } from '../builder.ts';

export const DeliveryStatusEnum = builder.enumType('DeliveryStatus', {
  values: {
    PENDING: { description: 'A try is due (now, or at nextAttemptAt for a retry).' },
    SENDING: { description: 'A try is in flight.' },
    SUCCEEDED: {},
    FAILED: { description: 'Every try failed (or the endpoint was disabled); resend or replay it.' },
    CANCELED: { description: 'A scheduled send canceled before its first try (cancelScheduledMessage).' },
    SCHEDULED: {
      description: "A scheduled send waiting for its message's deliverAt (nextAttemptAt); no try has started.",
    },
  } as const,
});

export const AttemptStatusEnum = builder.enumType('AttemptStatus', {
  values: ['SENDING', 'SUCCEEDED', 'FAILED'] as const,
});

export const AttemptTriggerEnum = builder.enumType('AttemptTrigger', {
  values: ['SCHEDULED', 'MANUAL'] as const,
});

export const ViewerKindEnum = builder.enumType('ViewerKind', {
  values: ['OPERATOR', 'PORTAL'] as const,
});

export const EndpointOrderingEnum = builder.enumType('EndpointOrdering', {
  description: "The order an endpoint's deliveries are sent in.",
  values: {
    NONE: { description: 'As they come, several at once (up to the per-endpoint concurrency).' },
    FIFO: {
      description:
        "One at a time, in the order of their messages: a delivery that fails holds the ones behind it until it succeeds or exhausts its retry schedule (they show it as heldBy). A manual resend is sent in its turn for the endpoint's one slot, not in message order.",
    },
  } as const,
});

export const SignatureSchemeEnum = builder.enumType('SignatureScheme', {
  description: 'How deliveries to an endpoint are signed (Standard Webhooks).',
  values: {
    HMAC_SHA256: {
      description: 'v1: HMAC-SHA256 with a shared whsec_ secret, which the receiver verifies with.',
    },
    ED25519: {
      description:
        'v1a: ed25519. Dispatch keeps the whsk_ private key and never shows it; the receiver verifies with the whpk_ public key.',
    },
  } as const,
});
