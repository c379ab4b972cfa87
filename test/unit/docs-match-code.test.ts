// The limits and settings the docs state are the code's: docs/api.md's limits
// table against the constants it names, docs/operating.md's settings table
// against every environment variable src/config.ts reads (both ways). A new
// setting only needs its row in the table; a new exported MAX_/MIN_/_LIMIT
// constant only needs its row in the limits table.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { listSettings, type SettingDefault } from '../../src/config.ts';

const root = path.resolve(import.meta.dirname, '../..');

/** The rows of the first Markdown table whose header's first cell is `firstHeader`, as trimmed cells. */
function table(file: string, firstHeader: string): string[][] {
  const lines = readFileSync(path.join(root, file), 'utf8').split('\n');
  const cells = (line: string) =>
    line
      .trim()
      .replace(/^\||\|$/g, '')
      .split('|')
      .map((cell) => cell.trim());
  const start = lines.findIndex((line) => line.trim().startsWith('|') && cells(line)[0] === firstHeader);
  if (start < 0) throw new Error(`${file} has no table headed "${firstHeader}"`);
  const rows: string[][] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.trim().startsWith('|')) break;
    rows.push(cells(line));
  }
  return rows;
}

/** The first `code span` of a cell. */
const codeSpan = (cell: string) => /`([^`]+)`/.exec(cell)?.[1];
/** The first number written in a cell (1,048,576 and 1048576 alike). */
const firstNumber = (cell: string) => {
  const match = /\d[\d,_]*(\.\d+)?/.exec(cell.replace(/`[^`]*[a-zA-Z][^`]*`/g, ''));
  return match ? Number(match[0].replace(/[,_]/g, '')) : undefined;
};

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(root, dir), { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts') && !entry.parentPath.includes('generated'))
    .map((entry) => path.relative(root, path.join(entry.parentPath, entry.name)));
}
const sources = new Map(sourceFiles('src').map((file) => [file, readFileSync(path.join(root, file), 'utf8')]));

/** `12`, `7 * 24 * 3600`, `25_000`: constants written as plain arithmetic, evaluated without running the module. */
function arithmetic(expression: string): number | undefined {
  const text = expression.replace(/_/g, '').trim();
  if (!/^[\d\s*+]+$/.test(text)) return undefined;
  return text
    .split('+')
    .map((term) => term.split('*').reduce((product, factor) => product * Number(factor), 1))
    .reduce((sum, term) => sum + term, 0);
}

const settings = listSettings();

/**
 * What a limits row's code cell names, with its value: a setting of
 * config.ts (its default), a graphql-armor plugin configured inline
 * (`maxDepthPlugin({ n: 12 })`), or a `const` in src/ (only in the file
 * given in the row, when there is one).
 */
function valueInCode(name: string, file: string | undefined): { value: number; where: string }[] {
  const setting = settings.get(name);
  if (typeof setting === 'number') return [{ value: setting, where: 'src/config.ts' }];
  const found: { value: number; where: string }[] = [];
  const pattern = new RegExp(`\\b${name}\\(\\{\\s*n:\\s*([\\d_]+)|\\bconst ${name}(?::[^=]+)? = ([^;]+);`, 'g');
  for (const [where, text] of sources) {
    if (file && where !== file) continue;
    for (const match of text.matchAll(pattern)) {
      const value = arithmetic(match[1] ?? match[2] ?? '');
      if (value === undefined) throw new Error(`${where}: ${name} is not plain arithmetic: ${match[0]}`);
      found.push({ value, where });
    }
  }
  return found;
}

describe('docs/api.md: the limits table states the code’s limits', () => {
  // | limit | value | in the code |; the code cell is `NAME` or `NAME` in `src/file.ts`.
  const rows = table('docs/api.md', 'limit').map(([limit, value, code]) => ({
    limit: limit!,
    value: value!,
    name: codeSpan(code ?? ''),
    file: /`(src\/[^`]+)`/.exec(code ?? '')?.[1],
  }));

  it('has rows', () => expect(rows.length).toBeGreaterThan(5));

  it.each(rows.map((row) => [row.limit, row] as const))('%s: the value written is the code’s', (_limit, row) => {
    expect(row.name, `row "${row.limit}" names no constant or setting`).toBeDefined();
    const found = valueInCode(row.name!, row.file);
    expect(found.length, `${row.name} is not found in ${row.file ?? 'src/'}`).toBeGreaterThan(0);
    expect(new Set(found.map((f) => f.value)).size, `${row.name} has several values: ${JSON.stringify(found)}`).toBe(1);
    expect(firstNumber(row.value), `row "${row.limit}": "${row.value}"`).toBe(found[0]!.value);
  });

  it('names every exported MAX_…, MIN_… and …_LIMIT constant of src/', () => {
    const named = new Set(rows.map((row) => `${row.name}@${row.file ?? ''}`));
    const missing: string[] = [];
    for (const [where, text] of sources) {
      for (const [, name] of text.matchAll(/export const ((?:MAX|MIN)_\w+|\w+_LIMIT) =/g)) {
        if (!named.has(`${name}@`) && !named.has(`${name}@${where}`)) missing.push(`${name} (${where})`);
      }
    }
    expect(missing).toEqual([]);
  });
});

describe('docs/operating.md: the settings table is every setting config.ts reads', () => {
  // | setting (environment) | meaning | default |
  const rows = new Map(
    table('docs/operating.md', 'setting (environment)').map(([setting, meaning, fallback]) => [
      codeSpan(setting!) ?? setting!,
      { meaning: meaning ?? '', fallback: fallback ?? '' },
    ]),
  );

  it('reads settings at all (the recording works)', () => {
    expect(settings.get('PORT')).toBe(4000);
    expect(settings.size).toBeGreaterThan(10);
  });

  it('every setting config.ts reads has a row', () => {
    expect([...settings.keys()].filter((name) => !rows.has(name))).toEqual([]);
  });

  it('every row is a setting config.ts reads', () => {
    expect([...rows.keys()].filter((name) => !settings.has(name))).toEqual([]);
  });

  it.each([...settings].filter(([name]) => rows.has(name)))(
    '%s: the documented default is the code’s',
    (name, fallback: SettingDefault | undefined) => {
      const row = rows.get(name)!;
      expect(row.meaning, `${name} has no meaning written`).not.toBe('');
      expect(row.fallback, `${name} has no default written`).not.toBe('');
      // null: no default or a computed one, said in words; undefined: read without a reader that notes it.
      if (typeof fallback === 'number') expect(firstNumber(row.fallback), row.fallback).toBe(fallback);
      if (typeof fallback === 'string') expect(codeSpan(row.fallback), row.fallback).toBe(fallback);
    },
  );
});

describe('the test’s own readers can fail', () => {
  it('reads numbers and code spans as the tables write them', () => {
    expect(firstNumber('1048576 (1 MiB)')).toBe(1048576);
    expect(firstNumber('25,000 objects')).toBe(25000);
    expect(firstNumber('`DISPATCH_MAX_PAYLOAD_BYTES`, default 1,048,576')).toBe(1048576);
    expect(firstNumber('none')).toBeUndefined();
    expect(codeSpan("`'self'`")).toBe("'self'");
    expect(arithmetic('7 * 24 * 3600')).toBe(604800);
    expect(arithmetic('16 * 1024 + 1')).toBe(16385);
    expect(arithmetic('SOMETHING * 2')).toBeUndefined();
  });

  it('finds a constant, a plugin option and a setting, and not a name that is nowhere', () => {
    expect(valueInCode('MAX_PAGE_SIZE', undefined).map((f) => f.value)).toEqual([100]);
    expect(valueInCode('maxDepthPlugin', undefined).length).toBe(1);
    expect(valueInCode('DISPATCH_MAX_PAYLOAD_BYTES', undefined)).toEqual([{ value: 1048576, where: 'src/config.ts' }]);
    expect(valueInCode('NO_SUCH_LIMIT_ANYWHERE', undefined)).toEqual([]);
  });
});
