import type { PrismaClient } from '../db/client.ts';

/**
 * A Map kept per Prisma client, so two databases in one process (tests)
 * never share entries; it goes with its client.
 */
export function perClientMap<K, V>(): (prisma: PrismaClient) => Map<K, V> {
  const maps = new WeakMap<PrismaClient, Map<K, V>>();
  return (prisma) => {
    let map = maps.get(prisma);
    if (!map) {
      map = new Map();
      maps.set(prisma, map);
    }
    return map;
  };
}
