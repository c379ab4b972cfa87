import { builder } from '../builder.ts';

export const DeliveryStatusEnum = builder.enumType('DeliveryStatus', {
  values: ['PENDING', 'SENDING', 'SUCCEEDED', 'FAILED', 'CANCELED'] as const,
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
