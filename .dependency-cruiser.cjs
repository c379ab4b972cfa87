// The layers of src/, one way: main -> http -> graphql -> domain -> db;
// delivery and live sit beside graphql and use domain and db; pure rules
// (webhooks/), metrics, logging, tracing and settings sit below all of them.
// `npm run lint:layers` (and so .ci/run) fails on a back-edge with the rule's name.
const layer = (name) => `^src/${name}`;

/** `from` may not import anything matching `to`. */
const forbid = (name, comment, from, to) => ({
  name,
  comment,
  severity: 'error',
  from: { path: from },
  to: { path: to },
});

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'Files import each other in a cycle.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    forbid(
      'leaf-rules-import-nothing-of-ours',
      'webhooks/, metrics.ts, logger.ts, tracing.ts and config.ts are below every layer.',
      '^src/(webhooks/|metrics\\.ts|logger\\.ts|tracing\\.ts|config\\.ts)',
      '^src/(?!webhooks/|metrics\\.ts|logger\\.ts|tracing\\.ts|config\\.ts)',
    ),
    forbid(
      'db-is-the-bottom-layer',
      'db/ knows tables, not what Dispatch does with them.',
      layer('db/'),
      '^src/(domain|delivery|live|graphql|http)/|^src/(main|cli)\\.ts',
    ),
    forbid(
      'domain-knows-no-transport',
      'domain/ never sees GraphQL, HTTP, the queue runtime or the live feed runtime.',
      layer('domain/'),
      '^src/(delivery|live|graphql|http)/|^src/(main|cli)\\.ts',
    ),
    forbid(
      'delivery-beside-graphql',
      'delivery/ uses domain and db; it never reaches the API layers.',
      layer('delivery/'),
      '^src/(graphql|http)/|^src/(main|cli)\\.ts',
    ),
    forbid(
      'live-beside-graphql',
      'live/ uses domain and db; it never reaches the API layers or the engine.',
      layer('live/'),
      '^src/(graphql|http|delivery)/|^src/(main|cli)\\.ts',
    ),
    forbid(
      'graphql-below-http',
      'graphql/ is called by http/ and calls domain/ (and live/ for subscriptions).',
      layer('graphql/'),
      '^src/(http|delivery)/|^src/(main|cli)\\.ts',
    ),
    forbid(
      'http-routes-only',
      'http/ serves graphql/; the delivery engine is wired by main.ts.',
      layer('http/'),
      '^src/delivery/|^src/(main|cli)\\.ts',
    ),
    forbid(
      'client-stands-alone',
      'The typed client (@dispatch/client) ships to other repositories and imports nothing of the server.',
      '^packages/client/',
      '^(src|test|scripts|bench|portal-app)/',
    ),
    forbid(
      'server-never-imports-the-client',
      'The server does not depend on its own client package; only tests and scripts use it.',
      '^src/',
      '^packages/',
    ),
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: '^src/db/generated/' },
  },
};
