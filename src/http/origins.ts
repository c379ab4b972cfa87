import type { IncomingMessage } from 'node:http';

/**
 * Which browser origins may call the API (DISPATCH_CORS_ORIGINS): the portal
 * and dashboard are served by Dispatch itself, so by default only its own
 * origin may, and operator backends send no Origin at all. Applied alike to
 * HTTP requests (SSE included) and WebSocket upgrades, which browsers do not
 * hold to CORS: a request from any other origin is refused, not merely left
 * without CORS headers.
 */
export interface OriginPolicy {
  /**
   * `none`: no Origin header (not a browser's cross-origin request);
   * `same`: Dispatch's own origin; `listed`: in DISPATCH_CORS_ORIGINS;
   * `refused`: any other.
   */
  classify(req: IncomingMessage): 'none' | 'same' | 'listed' | 'refused';
  /** Whether `origin` is one of DISPATCH_CORS_ORIGINS (those get CORS headers). */
  isListed(origin: string | null): origin is string;
}

export function createOriginPolicy(options: { allowed: readonly string[]; publicUrl: () => string }): OriginPolicy {
  const allowed = new Set(options.allowed);
  const isListed = (origin: string | null): origin is string => origin !== null && allowed.has(origin);
  return {
    isListed,
    classify(req) {
      const origin = req.headers.origin;
      if (origin === undefined) return 'none';
      if (isListed(origin)) return 'listed';
      let url: URL;
      try {
        url = new URL(origin);
      } catch {
        // `null` (sandboxed frames, file: pages) and anything unreadable.
        return 'refused';
      }
      // The page came from the host this request was sent to, or from PUBLIC_URL (behind a proxy that rewrites Host).
      if (url.host === req.headers.host || url.origin === new URL(options.publicUrl()).origin) return 'same';
      return 'refused';
    },
  };
}

export const originRefusedMessage = (origin: string) =>
  `requests from the origin ${origin} are not allowed: DISPATCH_CORS_ORIGINS lists the browser origins that may call this API`;
