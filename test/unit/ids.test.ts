import { afterEach, describe, expect, it, vi } from 'vitest';
import { ID_PREFIX, type IdType, idFloorAt, idType, newId, newToken } from '../../src/domain/ids.ts';

const ID = /^[a-z]+_[0-9a-hjkmnp-tv-z]{26}$/;

describe('ids', () => {
  afterEach(() => vi.restoreAllMocks());

  it('carry the prefix of their type and 26 Crockford base-32 characters; idType reads the type back', () => {
    for (const type of Object.keys(ID_PREFIX) as IdType[]) {
      const id = newId(type);
      expect(id).toMatch(ID);
      expect(id.startsWith(`${ID_PREFIX[type]}_`)).toBe(true);
      expect(idType(id)).toBe(type);
    }
  });

  it('prefixes are distinct, so an id names one type', () => {
    const prefixes = Object.values(ID_PREFIX);
    expect(new Set(prefixes).size).toBe(prefixes.length);
  });

  it('idType is undefined for ids of no known prefix', () => {
    for (const id of ['', 'garbage', '_abc', 'xyz_01abc', 'APP_01abc', 'app']) expect(idType(id), id).toBeUndefined();
  });

  it('sort by creation time as plain strings, across milliseconds', () => {
    const now = vi.spyOn(Date, 'now');
    const ids: string[] = [];
    // Out of order on purpose: ids must sort by the time they carry.
    for (const t of [1_700_000_000_000, 1_700_000_000_001, 1_700_000_060_000, 1_800_000_000_000, 4_000_000_000_000]) {
      now.mockReturnValue(t);
      ids.push(newId('Message'));
    }
    expect([...ids].sort()).toEqual(ids);
  });

  it('are strictly increasing within one millisecond (monotonic), so a burst keeps its order', () => {
    vi.spyOn(Date, 'now').mockReturnValue(1_750_000_000_000);
    const ids = Array.from({ length: 1000 }, () => newId('Delivery'));
    expect(new Set(ids).size).toBe(1000);
    for (let i = 1; i < ids.length; i++) expect(ids[i]! > ids[i - 1]!, `${ids[i - 1]} < ${ids[i]}`).toBe(true);
  });

  it('idFloorAt(t) sorts below every id made at or after t and above every id made before', () => {
    const now = vi.spyOn(Date, 'now');
    const t = 1_760_000_000_000;
    now.mockReturnValue(t - 1);
    const before = newId('Attempt');
    now.mockReturnValue(t);
    const at = newId('Attempt');
    now.mockReturnValue(t + 1);
    const after = newId('Attempt');
    const floor = idFloorAt('Attempt', new Date(t));
    expect(before < floor).toBe(true);
    expect(floor <= at).toBe(true);
    expect(floor < after).toBe(true);
  });

  it('tokens are their prefix and base64url of 32 random bytes, never repeated', () => {
    const tokens = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const token = newToken(i % 2 ? 'dk' : 'dpt');
      expect(token).toMatch(/^(dk|dpt)_[A-Za-z0-9_-]{43}$/);
      expect(Buffer.from(token.split('_').slice(1).join('_'), 'base64url')).toHaveLength(32);
      tokens.add(token);
    }
    expect(tokens.size).toBe(200);
  });
});
