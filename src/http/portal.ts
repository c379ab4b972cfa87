import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Where `vite build` puts the portal SPA (at install, by scripts/generate.mjs). */
export const PORTAL_DIST = fileURLToPath(new URL('../../portal-app/dist/', import.meta.url));

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
  '.map': 'application/json',
};

export interface PortalRoutesOptions {
  /** The CSP frame-ancestors sources: who may embed the portal in an iframe. */
  frameAncestors: string;
  distDir?: string;
}

/**
 * Serves the portal SPA at /portal/ (and / and /dashboard as ways into its
 * operator side). Hashed assets are cached for a year; index.html never, so a
 * new build is picked up at once. The CSP keeps the SPA to its own origin and
 * lets only the configured ancestors frame it.
 */
export function createPortalRoutes(options: PortalRoutesOptions) {
  const dist = path.resolve(options.distDir ?? PORTAL_DIST);
  const csp = [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "object-src 'none'",
    `frame-ancestors ${options.frameAncestors}`,
  ].join('; ');
  const securityHeaders = {
    'content-security-policy': csp,
    'x-content-type-options': 'nosniff',
    // The token lives in the fragment, which is never sent; no referrer keeps even the path private.
    'referrer-policy': 'no-referrer',
  };

  async function sendFile(
    req: IncomingMessage,
    res: ServerResponse,
    file: string,
    cacheControl: string,
  ): Promise<boolean> {
    const info = await stat(file).catch(() => null);
    if (!info?.isFile()) return false;
    res.writeHead(200, {
      ...securityHeaders,
      'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
      'content-length': info.size,
      'cache-control': cacheControl,
    });
    if (req.method === 'HEAD') {
      res.end();
      return true;
    }
    await new Promise<void>((resolve, reject) => {
      createReadStream(file).on('error', reject).pipe(res).on('finish', resolve).on('close', resolve);
    });
    return true;
  }

  return async function portalRoute(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    const url = new URL(req.url ?? '/', 'http://localhost');
    // `/` in a browser is most likely the operator looking for the dashboard.
    if (url.pathname === '/' || url.pathname === '/dashboard' || url.pathname === '/dashboard/') {
      res.writeHead(302, { location: '/portal/#/dashboard', 'cache-control': 'no-store' }).end();
      return true;
    }
    // Asset URLs are absolute (Vite's base is /portal/), so /portal itself serves the SPA too.
    if (url.pathname !== '/portal' && !url.pathname.startsWith('/portal/')) return false;
    let relative: string;
    try {
      relative = decodeURIComponent(url.pathname.slice('/portal/'.length));
    } catch {
      return false;
    }
    const file = path.resolve(dist, relative);
    if (file !== dist && !file.startsWith(dist + path.sep)) return false;
    if (relative.startsWith('assets/')) {
      return sendFile(req, res, file, 'public, max-age=31536000, immutable');
    }
    if (relative !== '' && relative !== 'index.html' && (await sendFile(req, res, file, 'public, max-age=300')))
      return true;
    // Every other path is the SPA itself; it routes by the fragment.
    if (await sendFile(req, res, path.join(dist, 'index.html'), 'no-cache')) return true;
    res
      .writeHead(503, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' })
      .end('The portal is not built. Run `npm install` (or `npm run portal:build`) and start Dispatch again.\n');
    return true;
  };
}
