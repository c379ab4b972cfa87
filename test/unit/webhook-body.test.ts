import { describe, expect, it } from 'vitest';
import { webhookBody } from '../../src/delivery/deliver.ts';

describe('webhookBody', () => {
  it('wraps the stored jsonb text unparsed, with the type and the ISO time of the message', () => {
    const body = webhookBody({
      eventType: 'invoice.paid',
      messageCreatedMs: Date.UTC(2026, 10, 28, 12, 30, 5, 42),
      dataJson: '{"id": "inv_1", "amount": 4200, "lines": [1, 2.50]}',
    });
    expect(body).toBe(
      '{"type":"invoice.paid","timestamp":"2026-11-28T12:30:05.042Z","data":{"id": "inv_1", "amount": 4200, "lines": [1, 2.50]}}',
    );
    expect(JSON.parse(body)).toEqual({
      type: 'invoice.paid',
      timestamp: '2026-11-28T12:30:05.042Z',
      data: { id: 'inv_1', amount: 4200, lines: [1, 2.5] },
    });
  });

  it('escapes the event type and takes data that is not an object', () => {
    const body = webhookBody({ eventType: 'a"b\\c', messageCreatedMs: 0, dataJson: '"just text"' });
    expect(JSON.parse(body)).toEqual({ type: 'a"b\\c', timestamp: '1970-01-01T00:00:00.000Z', data: 'just text' });
  });
});
