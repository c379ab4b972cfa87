import { describe, expect, it } from 'vitest';
import { canonicalJson, hashData } from '../../src/domain/messages.ts';

describe('canonicalJson and hashData', () => {
  it('sort object keys at every depth, keep array order', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: null } })).toBe(
      '{"a":{"c":null,"d":[3,{"y":2,"z":1}]},"b":1}',
    );
  });

  it('are valid JSON that parses back to the same value', () => {
    const value = {
      s: 'quote " backslash \\ newline \n ünï ✓',
      n: [0, -1.5, 1e21],
      t: true,
      f: false,
      z: null,
      e: {},
      l: [],
    };
    expect(JSON.parse(canonicalJson(value))).toEqual(value);
  });

  it('hash equal data equally whatever its key order', () => {
    const a = { order: { id: 1, lines: [{ sku: 'x', qty: 2 }] }, customer: 'c1' };
    const b = { customer: 'c1', order: { lines: [{ qty: 2, sku: 'x' }], id: 1 } };
    expect(hashData(a)).toBe(hashData(b));
    expect(hashData(a)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('hash different data differently', () => {
    const base = { a: 1, b: [1, 2] };
    const variants: unknown[] = [
      { a: 1, b: [2, 1] },
      { a: '1', b: [1, 2] },
      { a: 1, b: [1, 2], c: null },
      [base],
      { a: 1 },
      null,
      0,
      '',
      false,
    ];
    const hashes = new Set([hashData(base), ...variants.map(hashData)]);
    expect(hashes.size).toBe(variants.length + 1);
  });

  it('treat keys with undefined values as absent, as JSON does', () => {
    expect(canonicalJson({ a: 1, b: undefined })).toBe('{"a":1}');
    expect(hashData({ a: 1, b: undefined })).toBe(hashData({ a: 1 }));
  });

  it('distinguish a key from a value that looks like it', () => {
    expect(hashData({ 'a,b': 1 })).not.toBe(hashData({ a: 1, b: 1 }));
    expect(hashData({ a: '1,"b":2' })).not.toBe(hashData({ a: 1, b: 2 }));
  });
});
