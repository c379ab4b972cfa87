import client from 'prom-client';

/**
 * One Prometheus registry per process. It sits below every layer so that http,
 * delivery and live can each add their own series without importing each other.
 */
export const registry = new client.Registry();
// prom-client's names already start with process_ / nodejs_: dispatch_process_resident_memory_bytes, dispatch_nodejs_heap_size_used_bytes.
client.collectDefaultMetrics({ register: registry, prefix: 'dispatch_' });
