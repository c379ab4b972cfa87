import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, readMigrations } from '../../src/db/migrate.ts';
import { createTestDatabase } from '../support/database.ts';
import {
  actualSchemaShape,
  compareSchemaShapes,
  expectedSchemaShape,
  expectedShapeOfSchemaFile,
  type SchemaShape,
} from '../support/schema-compare.ts';

async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

describe('migrations', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  beforeAll(async () => {
    db = await createTestDatabase({ empty: true });
  });
  afterAll(async () => db.drop());

  it('apply once, recorded in _prisma_migrations, even when two processes start at once', async () => {
    const results = await Promise.all([migrate(db.url), migrate(db.url), migrate(db.url)]);
    const names = readMigrations().map((m) => m.name);
    expect(results.flat().sort()).toEqual(names);
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const { rows } = await client.query(
      'SELECT migration_name, checksum, finished_at, applied_steps_count FROM "_prisma_migrations" ORDER BY migration_name',
    );
    await client.end();
    expect(rows.map((r) => r.migration_name)).toEqual(names);
    for (const [i, row] of rows.entries()) {
      expect(row.checksum).toBe(readMigrations()[i]!.checksum);
      expect(row.finished_at).toBeInstanceOf(Date);
      expect(row.applied_steps_count).toBe(1);
    }
    expect(await migrate(db.url)).toEqual([]);
  });
});

describe('a migrated database matches prisma/schema.prisma', () => {
  let fresh: Awaited<ReturnType<typeof createTestDatabase>>;
  let expected: SchemaShape;
  beforeAll(async () => {
    fresh = await createTestDatabase({ empty: true });
    await migrate(fresh.url);
    expected = await expectedShapeOfSchemaFile();
  });
  afterAll(async () => fresh.drop());

  it('the schema side covers the whole model, keys and indexes included', () => {
    // Guards against a comparison that passes because it reads nothing.
    expect(Object.keys(expected.relations).sort()).toEqual([
      'ApiKey',
      'App',
      'Attempt',
      'Delivery',
      'Endpoint',
      'EndpointControl',
      'EndpointSecret',
      'EndpointStat',
      'EventType',
      'LiveEvent',
      'LiveEventHorizon',
      'LiveEvent_seq_seq',
      'Message',
      'PortalSession',
      'Recipient',
      'Replay',
      'ReplayDelivery',
      'Workspace',
    ]);
    expect(expected.enums).toEqual({
      DeliveryStatus: ['PENDING', 'SENDING', 'SUCCEEDED', 'FAILED', 'CANCELED', 'SCHEDULED'],
      AttemptStatus: ['SENDING', 'SUCCEEDED', 'FAILED'],
      AttemptTrigger: ['SCHEDULED', 'MANUAL'],
      EndpointOrdering: ['NONE', 'FIFO'],
      SignatureScheme: ['HMAC_SHA256', 'ED25519'],
    });
    expect(expected.columns['"Delivery"."status"']).toEqual({
      type: 'DeliveryStatus',
      notNull: true,
      default: "'PENDING'",
      generated: null,
    });
    expect(expected.columns['"Endpoint"."headers"']).toEqual({
      type: 'jsonb',
      notNull: true,
      default: "'{}'",
      generated: null,
    });
    expect(expected.columns['"Endpoint"."eventTypes"']).toEqual({
      type: 'text[]',
      notNull: false,
      default: null,
      generated: null,
    });
    expect(expected.columns['"App"."retrySchedule"']?.type).toBe('integer[]');
    expect(expected.columns['"Workspace"."createdAt"']).toEqual({
      type: 'timestamp(3) without time zone',
      notNull: true,
      default: 'CURRENT_TIMESTAMP',
      generated: null,
    });
    expect(expected.columns['"Endpoint"."updatedAt"']).toEqual({
      type: 'timestamp(3) without time zone',
      notNull: true,
      default: null,
      generated: null,
    });
    expect(expected.columns['"Attempt"."responseStatusCode"']).toEqual({
      type: 'integer',
      notNull: false,
      default: null,
      generated: null,
    });
    expect(expected.indexes.Message_appId_eventType_id_idx).toEqual({
      table: 'Message',
      unique: false,
      method: 'btree',
      columns: ['appId', 'eventType', 'id'],
      include: [],
      predicate: null,
    });
    expect(expected.indexes.Workspace_name_key?.unique).toBe(true);
    expect(expected.indexes.Delivery_messageId_endpointId_key?.columns).toEqual(['messageId', 'endpointId']);
    expect(expected.constraints['"Attempt".Attempt_deliveryId_fkey']).toEqual({
      table: 'Attempt',
      kind: 'foreign key',
      columns: ['deliveryId'],
      references: { table: 'Delivery', columns: ['id'] },
      onDelete: 'CASCADE',
      onUpdate: 'CASCADE',
      deferrable: false,
    });
    expect(expected.constraints['"Workspace".Workspace_pkey']?.kind).toBe('primary key');
    expect(Object.keys(expected.indexes)).toHaveLength(25);
    expect(Object.values(expected.constraints).filter((c) => c.kind === 'foreign key')).toHaveLength(18);
    // Relations documented "[no foreign key]" have none in the database.
    for (const key of [
      '"Attempt".Attempt_recipientId_fkey',
      '"Attempt".Attempt_messageId_fkey',
      '"Attempt".Attempt_endpointId_fkey',
      '"Delivery".Delivery_recipientId_fkey',
      '"Delivery".Delivery_heldById_fkey',
    ]) {
      expect(expected.constraints[key], key).toBeUndefined();
    }
    expect(expected.constraints['"Delivery".Delivery_messageId_fkey']?.kind).toBe('foreign key');
  });

  it('every table, column, type, default, key, index, foreign key and enum, and nothing more', async () => {
    const actual = await withClient(fresh.url, (client) => actualSchemaShape(client));
    expect(compareSchemaShapes(expected, actual)).toEqual([]);
  });

  it('follows Prisma for what our schema does not use yet: @map, compound keys, DESC, native types, other defaults', async () => {
    const shape = await expectedSchemaShape(`
      datasource db {
        provider = "postgresql"
      }
      enum Color {
        RED @map("red")
        GREEN
      }
      model Parent {
        a  String
        b  Int
        children Child[]
        @@id([a, b])
        @@map("parents")
      }
      model Child {
        id       String   @id @default(uuid())
        parentA  String?  @map("parent_a")
        parentB  Int?
        color    Color    @default(RED)
        score    Int      @default(-1)
        label    String   @default("it's")
        tags     String[] @default([])
        code     String   @db.VarChar(12)
        parent   Parent?  @relation(fields: [parentA, parentB], references: [a, b])
        @@index([code(sort: Desc)], map: "child_code")
        @@unique([parentA, parentB])
      }
    `);
    expect(shape.columns['"Child"."id"']?.default).toBeNull();
    expect(shape.indexes.Child_parent_a_parentB_key?.columns).toEqual(['parent_a', 'parentB']);
    // An optional relation with no onDelete: Prisma's default is SET NULL.
    expect(shape.constraints['"Child".Child_parent_a_parentB_fkey']).toMatchObject({
      onDelete: 'SET NULL',
      onUpdate: 'CASCADE',
    });
    // The SQL Prisma's migrate generates for that schema matches it exactly.
    const scratch = await createTestDatabase({ empty: true });
    try {
      const actual = await withClient(scratch.url, async (client) => {
        await client.query(`
          CREATE TYPE "Color" AS ENUM ('red', 'GREEN');
          CREATE TABLE "parents" ("a" TEXT NOT NULL, "b" INTEGER NOT NULL, CONSTRAINT "parents_pkey" PRIMARY KEY ("a","b"));
          CREATE TABLE "Child" (
            "id" TEXT NOT NULL, "parent_a" TEXT, "parentB" INTEGER,
            "color" "Color" NOT NULL DEFAULT 'red', "score" INTEGER NOT NULL DEFAULT -1,
            "label" TEXT NOT NULL DEFAULT 'it''s', "tags" TEXT[] DEFAULT ARRAY[]::TEXT[], "code" VARCHAR(12) NOT NULL,
            CONSTRAINT "Child_pkey" PRIMARY KEY ("id"));
          CREATE INDEX "child_code" ON "Child"("code" DESC);
          CREATE UNIQUE INDEX "Child_parent_a_parentB_key" ON "Child"("parent_a", "parentB");
          ALTER TABLE "Child" ADD CONSTRAINT "Child_parent_a_parentB_fkey" FOREIGN KEY ("parent_a", "parentB")
            REFERENCES "parents"("a", "b") ON DELETE SET NULL ON UPDATE CASCADE;
        `);
        return actualSchemaShape(client);
      });
      expect(compareSchemaShapes(shape, actual)).toEqual([]);
    } finally {
      await scratch.drop();
    }
  });

  // Each case alters a fresh clone of the migrated database and names the
  // differences the comparison must then report, proving it can fail.
  const drifts: { name: string; sql: string; differences: string[]; alsoAbout?: string }[] = [
    {
      name: 'a dropped table',
      sql: 'DROP TABLE "PortalSession"',
      differences: [
        'column "PortalSession"."appId" is missing from the database',
        'constraint "PortalSession".PortalSession_pkey is missing from the database',
        'index PortalSession_recipientId_idx is missing from the database',
        'relation PortalSession is missing from the database',
      ],
      // ...and every other column, key and index of that table.
      alsoAbout: 'PortalSession',
    },
    {
      name: 'a column of the wrong type',
      sql: 'ALTER TABLE "Attempt" ALTER COLUMN "durationMs" TYPE bigint',
      differences: ['column "Attempt"."durationMs": type is "bigint", the schema says "integer"'],
    },
    {
      name: 'a timestamp with the wrong precision',
      sql: 'ALTER TABLE "Message" ALTER COLUMN "createdAt" TYPE timestamp(6)',
      differences: [
        'column "Message"."createdAt": type is "timestamp(6) without time zone", the schema says "timestamp(3) without time zone"',
      ],
    },
    {
      name: 'a nullable column that should be NOT NULL',
      sql: 'ALTER TABLE "ApiKey" ALTER COLUMN "prefix" DROP NOT NULL',
      differences: ['column "ApiKey"."prefix": notNull is false, the schema says true'],
    },
    {
      name: 'a wrong default',
      sql: `ALTER TABLE "Attempt" ALTER COLUMN "trigger" SET DEFAULT 'MANUAL'`,
      differences: [`column "Attempt"."trigger": default is "'MANUAL'", the schema says "'SCHEDULED'"`],
    },
    {
      name: 'a missing default',
      sql: 'ALTER TABLE "Endpoint" ALTER COLUMN "headers" DROP DEFAULT',
      differences: [`column "Endpoint"."headers": default is null, the schema says "'{}'"`],
    },
    {
      name: 'an extra column',
      sql: 'ALTER TABLE "App" ADD COLUMN "color" text',
      differences: ['column "App"."color" is in the database but not in the schema'],
    },
    {
      name: 'an extra table',
      sql: 'CREATE TABLE "Leftover" (id text)',
      differences: [
        'column "Leftover"."id" is in the database but not in the schema',
        'relation Leftover is in the database but not in the schema',
      ],
    },
    {
      name: 'a dropped index',
      sql: 'DROP INDEX "Message_appId_eventType_id_idx"',
      differences: ['index Message_appId_eventType_id_idx is missing from the database'],
    },
    {
      name: 'an index with its columns in the wrong order',
      sql: 'DROP INDEX "Message_appId_eventType_id_idx"; CREATE INDEX "Message_appId_eventType_id_idx" ON "Message" ("eventType", "appId", "id")',
      differences: [
        'index Message_appId_eventType_id_idx: columns is ["eventType","appId","id"], the schema says ["appId","eventType","id"]',
      ],
    },
    {
      name: 'a unique index that is not unique',
      sql: 'DROP INDEX "ApiKey_tokenHash_key"; CREATE INDEX "ApiKey_tokenHash_key" ON "ApiKey" ("tokenHash")',
      differences: ['index ApiKey_tokenHash_key: unique is false, the schema says true'],
    },
    {
      name: "a unique index under a name that is not Prisma's",
      sql: 'ALTER INDEX "Recipient_appId_uid_key" RENAME TO "recipient_app_uid"',
      differences: [
        'index Recipient_appId_uid_key is missing from the database',
        'index recipient_app_uid is in the database but not in the schema',
      ],
    },
    {
      name: 'a partial index',
      sql: 'DROP INDEX "Endpoint_appId_id_idx"; CREATE INDEX "Endpoint_appId_id_idx" ON "Endpoint" ("appId", "id") WHERE NOT disabled',
      differences: ['index Endpoint_appId_id_idx: predicate is "(NOT disabled)", the schema says null'],
    },
    {
      name: 'an extra index',
      sql: 'CREATE INDEX "Attempt_url_idx" ON "Attempt" ("url")',
      differences: ['index Attempt_url_idx is in the database but not in the schema'],
    },
    {
      name: 'a foreign key with the wrong ON DELETE',
      sql: 'ALTER TABLE "EndpointSecret" DROP CONSTRAINT "EndpointSecret_endpointId_fkey"; ALTER TABLE "EndpointSecret" ADD CONSTRAINT "EndpointSecret_endpointId_fkey" FOREIGN KEY ("endpointId") REFERENCES "Endpoint"("id") ON DELETE RESTRICT ON UPDATE CASCADE',
      differences: [
        'constraint "EndpointSecret".EndpointSecret_endpointId_fkey: onDelete is "RESTRICT", the schema says "CASCADE"',
      ],
    },
    {
      name: 'a missing foreign key',
      sql: 'ALTER TABLE "Delivery" DROP CONSTRAINT "Delivery_endpointId_fkey"',
      differences: ['constraint "Delivery".Delivery_endpointId_fkey is missing from the database'],
    },
    {
      name: 'a missing primary key',
      sql: 'ALTER TABLE "EventType" DROP CONSTRAINT "EventType_pkey"',
      differences: ['constraint "EventType".EventType_pkey is missing from the database'],
    },
    {
      name: 'an extra check constraint',
      sql: `ALTER TABLE "Delivery" ADD CONSTRAINT "Delivery_attemptCount_check" CHECK ("attemptCount" >= 0)`,
      differences: ['constraint "Delivery".Delivery_attemptCount_check is in the database but not in the schema'],
    },
    {
      name: 'a unique constraint where Prisma makes a unique index',
      sql: 'DROP INDEX "Workspace_name_key"; ALTER TABLE "Workspace" ADD CONSTRAINT "Workspace_name_key" UNIQUE ("name")',
      differences: ['constraint "Workspace".Workspace_name_key is in the database but not in the schema'],
    },
    {
      name: 'an enum with an extra value',
      sql: `ALTER TYPE "AttemptTrigger" ADD VALUE 'RECOVERY'`,
      differences: ['enum AttemptTrigger is ["SCHEDULED","MANUAL","RECOVERY"], the schema says ["SCHEDULED","MANUAL"]'],
    },
    {
      name: 'an enum with its values out of order',
      sql: `ALTER TYPE "DeliveryStatus" RENAME VALUE 'PENDING' TO 'WAITING'; ALTER TYPE "DeliveryStatus" ADD VALUE 'PENDING' AFTER 'CANCELED'`,
      differences: [
        `column "Delivery"."status": default is "'WAITING'", the schema says "'PENDING'"`,
        'enum DeliveryStatus is ["WAITING","SENDING","SUCCEEDED","FAILED","CANCELED","PENDING","SCHEDULED"], the schema says ["PENDING","SENDING","SUCCEEDED","FAILED","CANCELED","SCHEDULED"]',
      ],
    },
    {
      name: 'an extra enum type',
      sql: `CREATE TYPE "Mood" AS ENUM ('HAPPY')`,
      differences: ['enum Mood is in the database but not in the schema'],
    },
    {
      name: 'an extra sequence',
      sql: 'CREATE SEQUENCE "attempt_seq"',
      differences: ['relation attempt_seq is in the database but not in the schema'],
    },
  ];

  it.each(drifts)('reports $name', async ({ sql, differences, alsoAbout }) => {
    const scratch = await createTestDatabase();
    try {
      const actual = await withClient(scratch.url, async (client) => {
        await client.query(sql);
        return actualSchemaShape(client);
      });
      const reported = compareSchemaShapes(expected, actual);
      const context = `reported:\n${reported.join('\n')}`;
      // A missing or extra object's line goes on with its shape; match by start.
      for (const difference of differences) {
        expect(
          reported.filter((line) => line.startsWith(difference)),
          `${difference}\n${context}`,
        ).toHaveLength(1);
      }
      for (const line of reported) {
        const explained =
          differences.some((d) => line.startsWith(d)) || (alsoAbout !== undefined && line.includes(alsoAbout));
        expect(explained, `unexpected: ${line}\n${context}`).toBe(true);
      }
    } finally {
      await scratch.drop();
    }
  });
});

describe('deleting what an attempt names deletes the attempt, through its delivery', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => db.drop());

  /** One of each row an attempt hangs from, suffixed so several can live side by side. */
  async function chain(client: pg.Client, s: string) {
    await client.query(`INSERT INTO "Workspace" (id, name) VALUES ($1, $1)`, [`ws_${s}`]);
    await client.query(`INSERT INTO "App" (id, "workspaceId", name) VALUES ($1, $2, 'a')`, [`app_${s}`, `ws_${s}`]);
    await client.query(`INSERT INTO "Recipient" (id, "appId", uid) VALUES ($1, $2, 'r')`, [`rcp_${s}`, `app_${s}`]);
    await client.query(
      `INSERT INTO "Endpoint" (id, "appId", "recipientId", url, "updatedAt") VALUES ($1, $2, $3, 'https://example.com/', now())`,
      [`ep_${s}`, `app_${s}`, `rcp_${s}`],
    );
    await client.query(
      `INSERT INTO "Message" (id, "appId", "recipientId", uid, "eventType", data, "dataHash") VALUES ($1, $2, $3, $1, 'e', '{}', 'x')`,
      [`msg_${s}`, `app_${s}`, `rcp_${s}`],
    );
    await client.query(
      `INSERT INTO "Delivery" (id, "appId", "recipientId", "messageId", "endpointId", "updatedAt") VALUES ($1, $2, $3, $4, $5, now())`,
      [`dlv_${s}`, `app_${s}`, `rcp_${s}`, `msg_${s}`, `ep_${s}`],
    );
    await client.query(
      `INSERT INTO "Attempt" (id, "appId", "recipientId", "messageId", "endpointId", "deliveryId", url) VALUES ($1, $2, $3, $4, $5, $6, 'https://example.com/')`,
      [`atm_${s}`, `app_${s}`, `rcp_${s}`, `msg_${s}`, `ep_${s}`, `dlv_${s}`],
    );
  }

  it('an endpoint, a message, a recipient or an app', async () => {
    await withClient(db.url, async (client) => {
      const attempts = async (s: string) =>
        Number((await client.query(`SELECT count(*) AS n FROM "Attempt" WHERE id = $1`, [`atm_${s}`])).rows[0].n);
      for (const [s, table, id] of [
        ['e', 'Endpoint', 'ep_e'],
        ['m', 'Message', 'msg_m'],
        ['r', 'Recipient', 'rcp_r'],
        ['a', 'App', 'app_a'],
      ] as const) {
        await chain(client, s);
        expect(await attempts(s)).toBe(1);
        await client.query(`DELETE FROM "${table}" WHERE id = $1`, [id]);
        expect(await attempts(s), `deleting the ${table}`).toBe(0);
      }
    });
  });
});
