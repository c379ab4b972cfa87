import type { GraphQLError } from 'graphql';
import { describe, expect, it } from 'vitest';
import { isDatabaseUnavailable } from '../../src/db/client.ts';
import { Prisma } from '../../src/db/generated/prisma/client.ts';
import { DispatchError } from '../../src/domain/errors.ts';
import { maskError } from '../../src/graphql/errors.ts';

const prismaError = (code: string, message: string) =>
  new Prisma.PrismaClientKnownRequestError(message, { code, clientVersion: Prisma.prismaVersion.client });

describe('isDatabaseUnavailable', () => {
  it('is true for a transaction lost with its connection (P2028), as for an unreachable server', () => {
    expect(isDatabaseUnavailable(prismaError('P2028', 'Transaction API error: Transaction not found.'))).toBe(true);
    expect(isDatabaseUnavailable(prismaError('P1001', "Can't reach database server"))).toBe(true);
    expect(isDatabaseUnavailable(Object.assign(new Error('terminating connection'), { code: '57P01' }))).toBe(true);
  });

  it('is false for a statement that was wrong', () => {
    expect(isDatabaseUnavailable(prismaError('P2002', 'Unique constraint failed'))).toBe(false);
    expect(isDatabaseUnavailable(Object.assign(new Error('syntax error'), { code: '42601' }))).toBe(false);
  });
});

describe('maskError', () => {
  it('answers our own SERVICE_UNAVAILABLE (a send that met its event type changing four times) as a 503 to retry', () => {
    const masked = maskError(
      new DispatchError('SERVICE_UNAVAILABLE', 'nothing was stored: send it again'),
      () => undefined,
    ) as GraphQLError;
    expect(masked.message).toBe('nothing was stored: send it again');
    expect(masked.extensions).toMatchObject({ code: 'SERVICE_UNAVAILABLE', http: { status: 503 } });
    const other = maskError(new DispatchError('NOT_FOUND', 'app not found'), () => undefined) as GraphQLError;
    expect(other.extensions).toEqual({ code: 'NOT_FOUND' });
  });
});
