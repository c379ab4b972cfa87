import {
  BREAK,
  type DocumentNode,
  GraphQLScalarType,
  type GraphQLSchema,
  getNullableType,
  Kind,
  type ListValueNode,
  type ObjectValueNode,
  TypeInfo,
  visit,
  visitWithTypeInfo,
} from 'graphql';

/**
 * Whether an operation writes a variable inside the literal of a custom
 * scalar, such as `data: {invoiceId: $v}` or `headers: {authorization: $v}`
 * for a JSON argument. graphql-jit parses such literals once, when it
 * compiles the document, without the variables, so their values would be
 * dropped in silence; these documents run on graphql-js, which parses the
 * literal with the request's variables. Cached per parsed document (yoga
 * keeps parsed documents, so a document is walked once).
 */
export function hasVariableInScalarLiteral(schema: GraphQLSchema, document: DocumentNode): boolean {
  let known = checked.get(document);
  if (known === undefined) {
    known = find(schema, document);
    checked.set(document, known);
  }
  return known;
}

const checked = new WeakMap<DocumentNode, boolean>();

function find(schema: GraphQLSchema, document: DocumentNode): boolean {
  // Most documents have no variable in an object or list literal at all.
  let found = false;
  const typeInfo = new TypeInfo(schema);
  // The literal's own type: TypeInfo has already stepped into a list's item type when it visits the list.
  const inScalarLiteral = (node: ObjectValueNode | ListValueNode) => {
    const type = node.kind === Kind.LIST ? typeInfo.getParentInputType() : typeInfo.getInputType();
    if (!(getNullableType(type) instanceof GraphQLScalarType)) return undefined;
    visit(node, {
      Variable() {
        found = true;
        return BREAK;
      },
    });
    return found ? BREAK : false;
  };
  visit(
    document,
    visitWithTypeInfo(typeInfo, {
      ObjectValue: inScalarLiteral,
      ListValue: inScalarLiteral,
    }),
  );
  return found;
}
