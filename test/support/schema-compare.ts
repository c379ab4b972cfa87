// Compares what prisma/schema.prisma declares with what a PostgreSQL database
// holds, object by object, in both directions. Both sides are reduced to the
// same plain shape (SchemaShape) so the comparison is one generic diff and a
// difference reads as one line: `column "ApiKey"."name": notNull is true, the schema says false`.
//
// The expected side follows what Prisma's own migrate would generate for
// PostgreSQL: its type mapping, its default rendering and its constraint names.
// Anything the schema uses that this file does not know how to render throws,
// so a new kind of attribute fails loudly instead of passing unchecked.
import { readFileSync } from 'node:fs';
import { getDMMF } from '@prisma/internals';
import type pg from 'pg';

type Datamodel = Awaited<ReturnType<typeof getDMMF>>['datamodel'];
type Model = Datamodel['models'][number];
type Field = Model['fields'][number];

export interface ColumnShape {
  /** `format_type` of the column, except enums by their bare name (`DeliveryStatus`, `DeliveryStatus[]`). */
  type: string;
  notNull: boolean;
  /** The default expression without a cast to the column's own type: `CURRENT_TIMESTAMP`, `'{}'`, `'PENDING'`, `0`. */
  default: string | null;
  /** Identity or generated column (`identity always`, `stored`); Prisma makes neither. */
  generated: string | null;
}

export interface IndexShape {
  table: string;
  unique: boolean;
  method: string;
  /** Key columns in order, with ` DESC` / ` NULLS FIRST|LAST` / an operator class when not the default. */
  columns: string[];
  include: string[];
  predicate: string | null;
}

export interface ConstraintShape {
  table: string;
  kind: 'primary key' | 'foreign key' | 'unique' | 'check' | 'exclusion' | 'trigger';
  columns: string[];
  references: { table: string; columns: string[] } | null;
  onDelete: ReferentialAction | null;
  onUpdate: ReferentialAction | null;
  deferrable: boolean;
}

export type ReferentialAction = 'CASCADE' | 'RESTRICT' | 'NO ACTION' | 'SET NULL' | 'SET DEFAULT';

export interface SchemaShape {
  /** Enum type name -> its values in order. */
  enums: Record<string, string[]>;
  /** Relation name -> its kind (`table`, `view`, `sequence`...). */
  relations: Record<string, string>;
  /** `"Table"."column"` -> column. */
  columns: Record<string, ColumnShape>;
  /** Index name -> index, primary key indexes excluded (the primary key constraint covers them). */
  indexes: Record<string, IndexShape>;
  /** `"Table".constraint` -> constraint; NOT NULL constraints are column properties instead. */
  constraints: Record<string, ConstraintShape>;
}

/** Tables a database may hold that the schema does not declare. */
const IGNORED_TABLES = new Set(['_prisma_migrations']);

/** PostgreSQL's limit on identifier length; Prisma truncates generated names to fit. */
const MAX_IDENTIFIER_LENGTH = 63;

// ---------------------------------------------------------------------------
// The schema side

const SCALAR_TYPES: Record<string, string> = {
  String: 'text',
  Int: 'integer',
  BigInt: 'bigint',
  Float: 'double precision',
  Decimal: 'numeric(65,30)',
  Boolean: 'boolean',
  DateTime: 'timestamp(3) without time zone',
  Json: 'jsonb',
  Bytes: 'bytea',
};

/** `@db.X(args)` -> the type PostgreSQL reports; only the ones worth knowing. */
function nativeType([name, args]: readonly [string, readonly string[]]): string {
  const withArgs = (base: string) => (args.length ? `${base}(${args.join(',')})` : base);
  switch (name) {
    case 'Text':
      return 'text';
    case 'VarChar':
      return withArgs('character varying');
    case 'Char':
      return withArgs('character');
    case 'Uuid':
      return 'uuid';
    case 'SmallInt':
      return 'smallint';
    case 'Integer':
      return 'integer';
    case 'BigInt':
      return 'bigint';
    case 'Real':
      return 'real';
    case 'DoublePrecision':
      return 'double precision';
    case 'Decimal':
      return withArgs('numeric');
    case 'Boolean':
      return 'boolean';
    case 'Date':
      return 'date';
    case 'Timestamp':
      return `timestamp(${args[0] ?? 3}) without time zone`;
    case 'Timestamptz':
      return `timestamp(${args[0] ?? 3}) with time zone`;
    case 'Json':
      return 'json';
    case 'JsonB':
      return 'jsonb';
    case 'ByteA':
      return 'bytea';
    default:
      throw new Error(`schema-compare does not know the PostgreSQL type of @db.${name}; teach it`);
  }
}

const sqlString = (value: string) => `'${value.replace(/'/g, "''")}'`;

/** The default as PostgreSQL prints it back, minus the cast to the column's own type. */
function expectedDefault(model: Model, field: Field, enums: Datamodel['enums']): string | null {
  if (!field.hasDefaultValue || field.default === undefined) return null;
  const where = `${model.name}.${field.name}`;
  const value = field.default;
  if (Array.isArray(value)) {
    // `ARRAY[]::text[]` as printed, minus the cast.
    if (value.length === 0) return 'ARRAY[]';
    throw new Error(`schema-compare does not render non-empty list defaults (${where}); teach it`);
  }
  if (typeof value === 'object' && value !== null && 'name' in value) {
    const fn = value as { name: string; args: readonly (string | number)[] };
    switch (fn.name) {
      case 'now':
        return 'CURRENT_TIMESTAMP';
      // BIGSERIAL / SERIAL: the sequence PostgreSQL names after table and column.
      case 'autoincrement':
        return `nextval('"${model.dbName ?? model.name}_${field.dbName ?? field.name}_seq"'::regclass)`;
      // Compared verbatim: write it in the schema as PostgreSQL prints it back.
      case 'dbgenerated':
        return String(fn.args[0] ?? '');
      // Filled in by the client, not the database.
      case 'uuid':
      case 'cuid':
      case 'nanoid':
      case 'ulid':
        return null;
      default:
        throw new Error(`schema-compare does not render @default(${fn.name}()) (${where}); teach it`);
    }
  }
  if (field.kind === 'enum') {
    const enumDef = enums.find((e) => e.name === field.type);
    const dbValue = enumDef?.values.find((v) => v.name === value)?.dbName ?? String(value);
    return sqlString(dbValue);
  }
  switch (field.type) {
    case 'String':
    case 'Json':
      return sqlString(String(value));
    case 'Boolean':
      return String(value);
    case 'Int': {
      // PostgreSQL prints a negative literal as a quoted string with a cast.
      const n = Number(value);
      return n < 0 ? sqlString(String(n)) : String(n);
    }
    default:
      throw new Error(`schema-compare does not render a ${field.type} default (${where}); teach it`);
  }
}

function columnType(field: Field, enumDbName: (name: string) => string): string {
  let base: string;
  if (field.kind === 'enum') base = enumDbName(field.type);
  else if (field.nativeType) base = nativeType(field.nativeType);
  else {
    const mapped = SCALAR_TYPES[field.type];
    if (!mapped) throw new Error(`schema-compare does not know the PostgreSQL type of ${field.type}; teach it`);
    base = mapped;
  }
  return field.isList ? `${base}[]` : base;
}

/** Prisma's default constraint and index names: `Table_col1_col2_suffix`, cut to fit 63 characters. */
export function prismaConstraintName(
  table: string,
  columns: readonly string[],
  suffix: 'pkey' | 'key' | 'idx' | 'fkey',
): string {
  if (suffix === 'pkey') return `${table}_pkey`;
  let body = [table, ...columns].join('_');
  if (body.length + suffix.length + 1 > MAX_IDENTIFIER_LENGTH)
    body = body.slice(0, MAX_IDENTIFIER_LENGTH - suffix.length - 1);
  return `${body}_${suffix}`;
}

const ON_ACTION: Record<string, ReferentialAction> = {
  Cascade: 'CASCADE',
  Restrict: 'RESTRICT',
  NoAction: 'NO ACTION',
  SetNull: 'SET NULL',
  SetDefault: 'SET DEFAULT',
};

/** The marker, in a relation field's `///` documentation, of a relation without a database key. */
export const NO_FOREIGN_KEY = '[no foreign key]';

/** What a database migrated to match `datamodel` (the text of a schema.prisma) must hold. */
export async function expectedSchemaShape(datamodel: string): Promise<SchemaShape> {
  const dmmf = await getDMMF({ datamodel });
  const { models, enums } = dmmf.datamodel;
  const shape: SchemaShape = { enums: {}, relations: {}, columns: {}, indexes: {}, constraints: {} };

  const enumDbName = (name: string) => {
    const def = enums.find((e) => e.name === name);
    if (!def) throw new Error(`unknown enum ${name}`);
    return def.dbName ?? def.name;
  };
  for (const def of enums) shape.enums[def.dbName ?? def.name] = def.values.map((v) => v.dbName ?? v.name);

  const modelByName = new Map(models.map((m) => [m.name, m]));
  const tableOf = (model: Model) => model.dbName ?? model.name;
  const columnOf = (model: Model, fieldName: string) => {
    const field = model.fields.find((f) => f.name === fieldName);
    if (!field) throw new Error(`${model.name} has no field ${fieldName}`);
    return field.dbName ?? field.name;
  };

  for (const model of models) {
    if (model.schema) throw new Error(`schema-compare handles one database schema only (${model.name} sets @@schema)`);
    const table = tableOf(model);
    shape.relations[table] = 'table';

    for (const field of model.fields) {
      if (field.kind === 'object') {
        // The side of a relation that holds the foreign key.
        const from = field.relationFromFields ?? [];
        if (from.length === 0) continue;
        // A relation documented "[no foreign key]" is Prisma Client's to
        // follow; the database has no key for it (schema.prisma says why).
        if (field.documentation?.includes(NO_FOREIGN_KEY)) continue;
        const target = modelByName.get(field.type);
        if (!target) throw new Error(`${model.name}.${field.name} points at unknown model ${field.type}`);
        const columns = from.map((name) => columnOf(model, name));
        const optional = from.some((name) => !model.fields.find((f) => f.name === name)!.isRequired);
        // Prisma's defaults when the schema names no action.
        const onDelete = field.relationOnDelete ?? (optional ? 'SetNull' : 'Restrict');
        const onUpdate = field.relationOnUpdate ?? 'Cascade';
        shape.constraints[`"${table}".${prismaConstraintName(table, columns, 'fkey')}`] = {
          table,
          kind: 'foreign key',
          columns,
          references: {
            table: tableOf(target),
            columns: (field.relationToFields ?? []).map((name) => columnOf(target, name)),
          },
          onDelete:
            ON_ACTION[onDelete] ??
            (() => {
              throw new Error(`unknown referential action ${onDelete}`);
            })(),
          onUpdate:
            ON_ACTION[onUpdate] ??
            (() => {
              throw new Error(`unknown referential action ${onUpdate}`);
            })(),
          deferrable: false,
        };
        continue;
      }
      if (field.kind === 'unsupported')
        throw new Error(`schema-compare cannot check Unsupported fields (${model.name}.${field.name})`);
      const fieldDefault = field.default as { name?: string } | undefined;
      if (fieldDefault && typeof fieldDefault === 'object' && fieldDefault.name === 'autoincrement') {
        // SERIAL / BIGSERIAL brings its own sequence.
        shape.relations[`${table}_${field.dbName ?? field.name}_seq`] = 'sequence';
      }
      shape.columns[`"${table}"."${field.dbName ?? field.name}"`] = {
        type: columnType(field, enumDbName),
        // Prisma creates scalar list columns without NOT NULL.
        notNull: field.isRequired && !field.isList,
        default: expectedDefault(model, field, enums),
        generated: null,
      };
    }
  }

  // Keys and indexes: from `datamodel.indexes` (every @id, @@id, @unique,
  // @@unique and @@index, with its fields in order). Older Prisma versions
  // lack it, and then @@index cannot be checked at all: refuse rather than pass.
  const indexes = dmmf.datamodel.indexes;
  if (!indexes)
    throw new Error('this Prisma version gives no datamodel.indexes in its DMMF; @@index cannot be checked');
  for (const index of indexes) {
    const model = modelByName.get(index.model);
    if (!model) throw new Error(`index on unknown model ${index.model}`);
    const table = tableOf(model);
    const columns = index.fields.map((f) => columnOf(model, f.name));
    for (const f of index.fields) {
      if (f.operatorClass)
        throw new Error(`schema-compare does not render operator classes (${model.name}.${f.name}); teach it`);
    }
    if (index.type === 'id') {
      const name = index.dbName ?? prismaConstraintName(table, columns, 'pkey');
      shape.constraints[`"${table}".${name}`] = {
        table,
        kind: 'primary key',
        columns,
        references: null,
        onDelete: null,
        onUpdate: null,
        deferrable: false,
      };
      continue;
    }
    if (index.type === 'fulltext') throw new Error(`PostgreSQL has no fulltext index (${model.name})`);
    const name = index.dbName ?? prismaConstraintName(table, columns, index.type === 'unique' ? 'key' : 'idx');
    const method = (index.algorithm ?? 'BTree').toLowerCase();
    shape.indexes[name] = {
      table,
      unique: index.type === 'unique',
      method,
      columns: index.fields.map((f) => columnOf(model, f.name) + (f.sortOrder === 'desc' ? ' DESC' : '')),
      include: [],
      predicate: null,
    };
  }
  return shape;
}

/** The expected shape of prisma/schema.prisma itself. */
export async function expectedShapeOfSchemaFile(
  file = new URL('../../prisma/schema.prisma', import.meta.url),
): Promise<SchemaShape> {
  return expectedSchemaShape(readFileSync(file, 'utf8'));
}

// ---------------------------------------------------------------------------
// The database side

const RELATION_KINDS: Record<string, string> = {
  r: 'table',
  p: 'partitioned table',
  v: 'view',
  m: 'materialized view',
  f: 'foreign table',
  S: 'sequence',
  c: 'composite type',
};

const CONSTRAINT_KINDS: Record<string, ConstraintShape['kind']> = {
  p: 'primary key',
  f: 'foreign key',
  u: 'unique',
  c: 'check',
  x: 'exclusion',
  t: 'trigger',
};

const ACTIONS: Record<string, ReferentialAction> = {
  a: 'NO ACTION',
  r: 'RESTRICT',
  c: 'CASCADE',
  n: 'SET NULL',
  d: 'SET DEFAULT',
};

/** What the database behind `client` holds in `schema` (default `public`). */
export async function actualSchemaShape(client: Pick<pg.Client, 'query'>, schema = 'public'): Promise<SchemaShape> {
  const shape: SchemaShape = { enums: {}, relations: {}, columns: {}, indexes: {}, constraints: {} };
  const ignored = (table: string) => IGNORED_TABLES.has(table);

  const enums = await client.query<{ name: string; values: string[] }>(
    `SELECT t.typname AS name, array_agg(e.enumlabel::text ORDER BY e.enumsortorder) AS values
       FROM pg_type t
       JOIN pg_namespace n ON n.oid = t.typnamespace
       JOIN pg_enum e ON e.enumtypid = t.oid
      WHERE n.nspname = $1
      GROUP BY t.typname`,
    [schema],
  );
  for (const row of enums.rows) shape.enums[row.name] = row.values;

  const relations = await client.query<{ name: string; kind: string }>(
    `SELECT c.relname AS name, c.relkind::text AS kind
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S', 'c')`,
    [schema],
  );
  for (const row of relations.rows) {
    if (!ignored(row.name)) shape.relations[row.name] = RELATION_KINDS[row.kind] ?? row.kind;
  }

  const columns = await client.query<{
    table: string;
    column: string;
    format: string;
    base_kind: string;
    base_name: string;
    is_array: boolean;
    own_type: string;
    not_null: boolean;
    default: string | null;
    identity: string;
    generated: string;
  }>(
    `SELECT c.relname AS table, a.attname AS column,
            format_type(a.atttypid, a.atttypmod) AS format,
            format_type(a.atttypid, NULL) AS own_type,
            base.typtype::text AS base_kind, base.typname AS base_name, t.typcategory = 'A' AS is_array,
            a.attnotnull AS not_null, pg_get_expr(d.adbin, d.adrelid) AS default,
            a.attidentity::text AS identity, a.attgenerated::text AS generated
       FROM pg_attribute a
       JOIN pg_class c ON c.oid = a.attrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_type t ON t.oid = a.atttypid
       JOIN pg_type base ON base.oid = CASE WHEN t.typcategory = 'A' THEN t.typelem ELSE t.oid END
       LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped`,
    [schema],
  );
  for (const row of columns.rows) {
    if (ignored(row.table)) continue;
    // Enums by bare name, so the expected side need not mimic identifier quoting.
    const type = row.base_kind === 'e' ? `${row.base_name}${row.is_array ? '[]' : ''}` : row.format;
    let dflt = row.default;
    const ownCast = `::${row.own_type}`;
    if (dflt?.endsWith(ownCast)) dflt = dflt.slice(0, -ownCast.length);
    shape.columns[`"${row.table}"."${row.column}"`] = {
      type,
      notNull: row.not_null,
      default: dflt,
      generated:
        row.identity === 'a'
          ? 'identity always'
          : row.identity === 'd'
            ? 'identity by default'
            : row.generated === 's'
              ? 'stored'
              : row.generated === 'v'
                ? 'virtual'
                : null,
    };
  }

  const indexes = await client.query<{
    table: string;
    name: string;
    unique: boolean;
    primary: boolean;
    method: string;
    predicate: string | null;
    key_count: number;
    keys: (string | null)[];
    options: number[];
    default_opclass: boolean[];
    opclasses: string[];
  }>(
    `SELECT t.relname AS table, i.relname AS name, ix.indisunique AS unique, ix.indisprimary AS primary,
            am.amname AS method, pg_get_expr(ix.indpred, ix.indrelid) AS predicate, ix.indnkeyatts AS key_count,
            array(SELECT CASE WHEN k.attnum = 0 THEN pg_get_indexdef(ix.indexrelid, k.ord::int, true) ELSE a.attname::text END
                    FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                    LEFT JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = k.attnum
                   ORDER BY k.ord) AS keys,
            array(SELECT o::int FROM unnest(ix.indoption::int2[]) WITH ORDINALITY AS x(o, ord) ORDER BY x.ord) AS options,
            array(SELECT oc.opcdefault FROM unnest(ix.indclass::oid[]) WITH ORDINALITY AS y(cls, ord)
                    JOIN pg_opclass oc ON oc.oid = y.cls ORDER BY y.ord) AS default_opclass,
            array(SELECT oc.opcname::text FROM unnest(ix.indclass::oid[]) WITH ORDINALITY AS y(cls, ord)
                    JOIN pg_opclass oc ON oc.oid = y.cls ORDER BY y.ord) AS opclasses
       FROM pg_index ix
       JOIN pg_class i ON i.oid = ix.indexrelid
       JOIN pg_class t ON t.oid = ix.indrelid
       JOIN pg_namespace n ON n.oid = t.relnamespace
       JOIN pg_am am ON am.oid = i.relam
      WHERE n.nspname = $1`,
    [schema],
  );
  for (const row of indexes.rows) {
    if (ignored(row.table) || row.primary) continue;
    const keys = row.keys.slice(0, row.key_count).map((key, i) => {
      const option = row.options[i] ?? 0;
      const desc = (option & 1) !== 0;
      const nullsFirst = (option & 2) !== 0;
      let text = key ?? '?';
      if (!row.default_opclass[i]) text += ` ${row.opclasses[i]}`;
      if (desc) text += ' DESC';
      // NULLS FIRST is the default for DESC, NULLS LAST for ASC.
      if (nullsFirst !== desc) text += nullsFirst ? ' NULLS FIRST' : ' NULLS LAST';
      return text;
    });
    shape.indexes[row.name] = {
      table: row.table,
      unique: row.unique,
      method: row.method,
      columns: keys,
      include: row.keys.slice(row.key_count).map((key) => key ?? '?'),
      predicate: row.predicate,
    };
  }

  const constraints = await client.query<{
    table: string;
    name: string;
    type: string;
    columns: string[];
    ref_table: string | null;
    ref_columns: string[];
    on_delete: string;
    on_update: string;
    deferrable: boolean;
  }>(
    `SELECT t.relname AS table, con.conname AS name, con.contype::text AS type,
            array(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
                    JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord) AS columns,
            ft.relname AS ref_table,
            array(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord)
                    JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.ord) AS ref_columns,
            con.confdeltype::text AS on_delete, con.confupdtype::text AS on_update, con.condeferrable AS deferrable
       FROM pg_constraint con
       JOIN pg_class t ON t.oid = con.conrelid
       JOIN pg_namespace n ON n.oid = t.relnamespace
       LEFT JOIN pg_class ft ON ft.oid = con.confrelid
      WHERE n.nspname = $1
        -- PostgreSQL 18 records NOT NULL as constraints; they are column properties here.
        AND con.contype <> 'n'`,
    [schema],
  );
  for (const row of constraints.rows) {
    if (ignored(row.table)) continue;
    const foreign = row.type === 'f';
    shape.constraints[`"${row.table}".${row.name}`] = {
      table: row.table,
      kind: CONSTRAINT_KINDS[row.type] ?? (row.type as ConstraintShape['kind']),
      columns: row.columns,
      references: foreign ? { table: row.ref_table!, columns: row.ref_columns } : null,
      onDelete: foreign ? ACTIONS[row.on_delete]! : null,
      onUpdate: foreign ? ACTIONS[row.on_update]! : null,
      deferrable: row.deferrable,
    };
  }
  return shape;
}

// ---------------------------------------------------------------------------
// The comparison

const LABELS: Record<keyof SchemaShape, (key: string) => string> = {
  enums: (key) => `enum ${key}`,
  relations: (key) => `relation ${key}`,
  columns: (key) => `column ${key}`,
  indexes: (key) => `index ${key}`,
  constraints: (key) => `constraint ${key}`,
};

const show = (value: unknown) => JSON.stringify(value);

/**
 * Every difference between what the schema declares (`expected`) and what the
 * database holds (`actual`), one readable line each, sorted; empty when they match.
 */
export function compareSchemaShapes(expected: SchemaShape, actual: SchemaShape): string[] {
  const differences: string[] = [];
  for (const category of Object.keys(LABELS) as (keyof SchemaShape)[]) {
    const want = expected[category] as Record<string, unknown>;
    const have = actual[category] as Record<string, unknown>;
    const label = LABELS[category];
    for (const key of Object.keys(want)) {
      if (!(key in have))
        differences.push(`${label(key)} is missing from the database (the schema declares ${show(want[key])})`);
    }
    for (const key of Object.keys(have)) {
      if (!(key in want))
        differences.push(`${label(key)} is in the database but not in the schema (${show(have[key])})`);
    }
    for (const key of Object.keys(want)) {
      if (!(key in have)) continue;
      const w = want[key];
      const h = have[key];
      if (Array.isArray(w) || typeof w !== 'object' || w === null) {
        if (show(w) !== show(h)) differences.push(`${label(key)} is ${show(h)}, the schema says ${show(w)}`);
        continue;
      }
      for (const prop of Object.keys(w)) {
        const wp = (w as Record<string, unknown>)[prop];
        const hp = (h as Record<string, unknown>)[prop];
        if (show(wp) !== show(hp))
          differences.push(`${label(key)}: ${prop} is ${show(hp)}, the schema says ${show(wp)}`);
      }
    }
  }
  return differences.sort();
}
