import type { TypedDocumentString } from './generated.ts';

/** A GraphQL error as the API answers it; `code` is extensions.code (or NETWORK). */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

const PORTAL_TOKEN = 'dispatch.portalToken';
const API_KEY = 'dispatch.apiKey';

/**
 * Takes the portal token from the URL fragment (#token=dpt_…) into
 * sessionStorage and removes it from the address bar, so it is neither
 * bookmarked, shared by copying the URL, nor kept in history.
 */
export function takeTokenFromFragment(): void {
  const match = /^#token=(dpt_[A-Za-z0-9_-]+)/.exec(location.hash);
  if (!match) return;
  sessionStorage.setItem(PORTAL_TOKEN, match[1]!);
  history.replaceState(null, '', `${location.pathname}${location.search}#/endpoints`);
}

export const session = {
  portalToken: () => sessionStorage.getItem(PORTAL_TOKEN),
  apiKey: () => sessionStorage.getItem(API_KEY),
  /** The API key lives in this tab's sessionStorage only, never in a URL. */
  signIn: (apiKey: string) => sessionStorage.setItem(API_KEY, apiKey),
  signOut: () => sessionStorage.removeItem(API_KEY),
};

/** Runs one typed operation with a bearer token; rejects with ApiError. */
export async function gql<R, V>(token: string, document: TypedDocumentString<R, V>, variables?: V): Promise<R> {
  let response: Response;
  try {
    response = await fetch('/graphql', {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        accept: 'application/graphql-response+json, application/json',
      },
      body: JSON.stringify({ query: document.toString(), variables: variables ?? {} }),
    });
  } catch {
    throw new ApiError('The server could not be reached. Check your connection and try again.', 'NETWORK');
  }
  let body: { data?: R | null; errors?: { message: string; extensions?: { code?: string } }[] };
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`The server answered HTTP ${response.status}.`, 'NETWORK');
  }
  const first = body.errors?.[0];
  if (first) throw new ApiError(first.message, first.extensions?.code ?? 'INTERNAL_SERVER_ERROR');
  if (body.data == null) throw new ApiError('The server sent no data.', 'INTERNAL_SERVER_ERROR');
  return body.data;
}
