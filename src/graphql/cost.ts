import {
  type DocumentNode,
  type FragmentDefinitionNode,
  type GraphQLField,
  type GraphQLNamedType,
  type GraphQLSchema,
  type GraphQLType,
  getOperationAST,
  Kind,
  type SelectionSetNode,
  type ValueNode,
} from 'graphql';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from './builder.ts';

/**
 * Most objects one operation may ask for, each connection counted at its full
 * page size: two nested full pages (100 × 100) pass, a third level does not.
 */
export const MAX_QUERY_NODES = 25_000;

/**
 * Most lexical tokens a document may have; the parser stops at the next one,
 * so a huge document costs no more than this to refuse. Dispatch's own
 * documents have a few hundred; large values belong in variables.
 */
export const MAX_DOCUMENT_TOKENS = 2_000;

/**
 * Longest document (in characters) whose parse, validation and compiled form
 * are kept for reuse, and how many characters of such documents are kept in
 * all: a parsed document takes about 100 bytes per character of source, so
 * this bounds the caches near 50 MB, whatever clients send.
 */
export const CACHED_DOCUMENT_CHARS = 8 * 1024;
export const DOCUMENT_CACHE_CHARS = 512 * 1024;

// graphql-js may be loaded twice (CommonJS and ESM builds) and its isObjectType()
// & co. refuse types of the other copy, so types are read by shape here.
function namedType(type: GraphQLType): GraphQLNamedType {
  let t: GraphQLType = type;
  while ('ofType' in t && t.ofType) t = t.ofType;
  return t as GraphQLNamedType;
}

/** `[T]`, `[T]!`, `[T!]!`: a list at the outer level. */
const isList = (type: GraphQLType) => String(type).startsWith('[');

function fieldsOf(type: GraphQLNamedType): Record<string, GraphQLField<unknown, unknown>> | undefined {
  return 'getFields' in type && typeof type.getFields === 'function' && !('parseValue' in type)
    ? (type.getFields() as Record<string, GraphQLField<unknown, unknown>>)
    : undefined;
}

function pageSize(value: ValueNode | undefined, variables: Record<string, unknown>): number | undefined {
  let size: unknown;
  if (value?.kind === Kind.INT) size = Number(value.value);
  else if (value?.kind === Kind.VARIABLE) size = variables[value.name.value];
  if (typeof size !== 'number' || !Number.isFinite(size)) return undefined;
  // Out-of-range sizes are refused by the connection itself, with a clearer message.
  return Math.min(Math.max(Math.trunc(size), 0), MAX_PAGE_SIZE);
}

/**
 * How many objects an operation can return at most, from the page sizes it
 * asks for. Computed at execution, not validation, because page sizes usually
 * come in variables (a limit that reads only literals is bypassed by `$first`).
 */
export function estimateNodes(
  schema: GraphQLSchema,
  document: DocumentNode,
  operationName: string | null | undefined,
  variables: Record<string, unknown> | null | undefined,
): number {
  const operation = getOperationAST(document, operationName);
  if (!operation) return 0;
  const vars = variables ?? {};
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const d of document.definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments.set(d.name.value, d);
  const root = schema.getRootType(operation.operation);
  if (!root) return 0;

  // `listSize` is the page size of the connection whose fields these are (for its edges and nodes lists).
  const count = (
    set: SelectionSetNode,
    parent: GraphQLNamedType,
    multiplier: number,
    listSize: number | undefined,
  ): number => {
    let total = 0;
    for (const selection of set.selections) {
      if (selection.kind === Kind.FIELD) {
        if (!selection.selectionSet) continue;
        const field = fieldsOf(parent)?.[selection.name.value];
        if (!field) continue; // introspection meta fields
        const type = namedType(field.type);
        const many = isList(field.type) ? multiplier * (listSize ?? DEFAULT_PAGE_SIZE) : multiplier;
        const args = new Map(selection.arguments?.map((a) => [a.name.value, a.value]));
        const size = type.name.endsWith('Connection')
          ? (pageSize(args.get('first'), vars) ?? pageSize(args.get('last'), vars) ?? DEFAULT_PAGE_SIZE)
          : undefined;
        total += many + count(selection.selectionSet, type, many, size);
      } else {
        const fragment = selection.kind === Kind.FRAGMENT_SPREAD ? fragments.get(selection.name.value) : selection;
        if (!fragment) continue;
        const condition = fragment.typeCondition ? schema.getType(fragment.typeCondition.name.value) : parent;
        total += count(fragment.selectionSet, condition ?? parent, multiplier, listSize);
      }
    }
    return total;
  };
  return count(operation.selectionSet, root, 1, undefined);
}
