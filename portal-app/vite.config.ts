import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

// The portal SPA, served by Dispatch at /portal (src/http/portal.ts).
// `npm run portal:dev` proxies the API to a Dispatch on PORT (default 4000).
const root = fileURLToPath(new URL('.', import.meta.url));
const api = `http://127.0.0.1:${process.env.PORT ?? 4000}`;

export default defineConfig({
  root,
  base: '/portal/',
  build: { outDir: 'dist', emptyOutDir: true, assetsDir: 'assets', sourcemap: false },
  server: { proxy: { '/graphql': { target: api, ws: true } } },
});
