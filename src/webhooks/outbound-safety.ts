import dns, { type LookupAddress, type LookupAllOptions } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';

/**
 * The one URL safety check of Dispatch (SSRF protection). An endpoint URL is
 * checked when it is saved (literal addresses) and again on every connection,
 * on the address DNS actually returned, so a name that later resolves to a
 * private address (DNS rebinding) is refused too. Operators open given
 * networks with DISPATCH_ALLOW_NETWORKS (tests and local development do).
 */

export type UrlErrorCode = 'BAD_USER_INPUT' | 'UNSAFE_URL';

/** A refused endpoint URL; `code` is the GraphQL error code to answer with. */
export class UrlError extends Error {
  readonly code: UrlErrorCode;
  constructor(code: UrlErrorCode, message: string) {
    super(message);
    this.name = 'UrlError';
    this.code = code;
  }
}

/** Longest endpoint URL accepted (at create, update and send alike). */
export const MAX_URL_LENGTH = 2048;

/**
 * An endpoint URL as Dispatch stores it: absolute http(s) with a host and
 * without credentials. Throws UrlError with BAD_USER_INPUT otherwise.
 */
export function parseEndpointUrl(url: string): URL {
  if (typeof url !== 'string' || url.trim() === '') throw new UrlError('BAD_USER_INPUT', 'url is required');
  if (url.length > MAX_URL_LENGTH) {
    throw new UrlError('BAD_USER_INPUT', `url must be at most ${MAX_URL_LENGTH} characters, got ${url.length}`);
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UrlError('BAD_USER_INPUT', `url must be an absolute http(s) URL, got ${JSON.stringify(url)}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new UrlError('BAD_USER_INPUT', `url must use http or https, got ${parsed.protocol.slice(0, -1)}`);
  }
  if (parsed.hostname === '') throw new UrlError('BAD_USER_INPUT', 'url must have a host');
  // Credentials in a URL end up in logs, in the portal and in the delivery
  // record for anyone who can read the endpoint; they belong in a header.
  if (parsed.username !== '' || parsed.password !== '') {
    throw new UrlError(
      'BAD_USER_INPUT',
      'url must not contain credentials (user:password@); send them in a custom header such as Authorization instead',
    );
  }
  return parsed;
}

// Non-public IPv4 ranges (IANA special-purpose registry, plus multicast and
// reserved space), named so a refusal can say what the address is.
const IPV4_RANGES: Array<[kind: string, cidrs: string[]]> = [
  ['"this network"', ['0.0.0.0/8']],
  ['private', ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16']],
  ['shared (carrier-grade NAT)', ['100.64.0.0/10']],
  ['loopback', ['127.0.0.0/8']],
  ['link-local', ['169.254.0.0/16']],
  ['IETF protocol assignment', ['192.0.0.0/24']],
  ['documentation', ['192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24']],
  ['deprecated 6to4 relay', ['192.88.99.0/24']],
  ['benchmarking', ['198.18.0.0/15']],
  ['multicast', ['224.0.0.0/4']],
  ['reserved or broadcast', ['240.0.0.0/4']],
];

// Non-public IPv6 ranges checked after the ones that embed an IPv4 address.
const IPV6_RANGES: Array<[kind: string, cidrs: string[]]> = [
  ['discard-only', ['100::/64']],
  ['local-use NAT64', ['64:ff9b:1::/48']],
  ['IETF protocol assignment (Teredo, benchmarking, ORCHID)', ['2001::/23']],
  ['documentation', ['2001:db8::/32', '3fff::/20']],
  ['unique-local', ['fc00::/7']],
  ['link-local', ['fe80::/10']],
  ['deprecated site-local', ['fec0::/10']],
  ['multicast', ['ff00::/8']],
];

function blockList(cidrs: string[]): BlockList {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [address, prefix] = cidr.split('/') as [string, string];
    list.addSubnet(address, Number(prefix), isIP(address) === 6 ? 'ipv6' : 'ipv4');
  }
  return list;
}

const IPV4_KINDS = IPV4_RANGES.map(([kind, cidrs]) => [kind, blockList(cidrs)] as const);
const IPV6_KINDS = IPV6_RANGES.map(([kind, cidrs]) => [kind, blockList(cidrs)] as const);
// All unicast IPv6 on the internet is allocated from 2000::/3; anything else
// that does not embed an IPv4 address is local, special or unassigned.
const GLOBAL_UNICAST_V6 = blockList(['2000::/3']);

function withoutZone(ip: string): string {
  const percent = ip.indexOf('%');
  return percent === -1 ? ip : ip.slice(0, percent);
}

/** The eight 16-bit groups of a valid IPv6 address (dotted IPv4 tail and zone allowed). */
function ipv6Groups(ip: string): number[] {
  let text = withoutZone(ip);
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const [a, b, c, d] = tail.split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const left = head === '' ? [] : head.split(':');
  let groups = left;
  if (rest !== undefined) {
    const right = rest === '' ? [] : rest.split(':');
    groups = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  }
  return groups.map((group) => Number.parseInt(group, 16));
}

function ipv4Of(high: number, low: number): string {
  return `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`;
}

function zeroes(groups: number[], from: number, to: number): boolean {
  return groups.slice(from, to).every((group) => group === 0);
}

function classifyIpv4(ip: string): string | null {
  for (const [kind, list] of IPV4_KINDS) if (list.check(ip, 'ipv4')) return kind;
  return null;
}

function classifyEmbedded(form: string, ipv4: string): string | null {
  const kind = classifyIpv4(ipv4);
  return kind === null ? null : `${kind} (${form} ${ipv4})`;
}

function classifyIpv6(ip: string): string | null {
  const g = ipv6Groups(ip);
  if (zeroes(g, 0, 5) && g[5] === 0xffff) return classifyEmbedded('IPv4-mapped', ipv4Of(g[6]!, g[7]!));
  if (zeroes(g, 0, 6)) {
    if (g[6] === 0 && g[7] === 0) return 'unspecified';
    if (g[6] === 0 && g[7] === 1) return 'loopback';
    return 'deprecated IPv4-compatible';
  }
  // Well-known NAT64 and 6to4 reach the IPv4 address they embed, so they are
  // as public as that address.
  if (g[0] === 0x64 && g[1] === 0xff9b && zeroes(g, 2, 6)) return classifyEmbedded('NAT64', ipv4Of(g[6]!, g[7]!));
  if (g[0] === 0x2002) return classifyEmbedded('6to4', ipv4Of(g[1]!, g[2]!));
  const plain = withoutZone(ip);
  for (const [kind, list] of IPV6_KINDS) if (list.check(plain, 'ipv6')) return kind;
  if (!GLOBAL_UNICAST_V6.check(plain, 'ipv6')) return 'reserved (not global unicast)';
  return null;
}

/**
 * What kind of non-public address `ip` is ("loopback", "private",
 * "link-local (IPv4-mapped 169.254.169.254)", …), or null when it is a
 * public address. A string that is not an IP address is "not an IP address".
 */
export function classifyAddress(ip: string): string | null {
  switch (isIP(ip)) {
    case 4:
      return classifyIpv4(ip);
    case 6:
      return classifyIpv6(ip);
    default:
      return 'not an IP address';
  }
}

/** Whether `ip` is a public internet address that deliveries may reach by default. */
export function isPublicAddress(ip: string): boolean {
  return classifyAddress(ip) === null;
}

/** Which addresses deliveries may reach: public ones, and the operator's allowed networks. */
export interface AddressPolicy {
  isAllowed(ip: string): boolean;
  /** The allowed networks, as given. */
  readonly allowNetworks: readonly string[];
}

/**
 * The policy for `allowNetworks` (CIDRs such as `127.0.0.0/8` or `::1/128`,
 * as DISPATCH_ALLOW_NETWORKS gives them). Throws on a malformed CIDR. An
 * allowed IPv4 network also admits the IPv4-mapped IPv6 form of its addresses.
 */
export function createAddressPolicy(allowNetworks: readonly string[] = []): AddressPolicy {
  const allowed = new BlockList();
  for (const cidr of allowNetworks) {
    const match = /^([^/]+)\/(\d{1,3})$/.exec(cidr.trim());
    const family = match ? isIP(match[1]!) : 0;
    const prefix = match ? Number(match[2]) : Number.NaN;
    if (family === 0 || match![1]!.includes('%') || prefix > (family === 4 ? 32 : 128)) {
      throw new RangeError(`${JSON.stringify(cidr)} is not a network such as 127.0.0.0/8 or ::1/128`);
    }
    allowed.addSubnet(match![1]!, prefix, family === 4 ? 'ipv4' : 'ipv6');
  }
  const networks = Object.freeze([...allowNetworks]);
  return {
    allowNetworks: networks,
    isAllowed(ip: string): boolean {
      const family = isIP(ip);
      if (family === 0) return false;
      if (isPublicAddress(ip)) return true;
      return allowed.check(withoutZone(ip), family === 4 ? 'ipv4' : 'ipv6');
    },
  };
}

function refusal(where: string, kind: string): string {
  return `${where} is a ${kind} address; deliveries to non-public addresses are refused unless DISPATCH_ALLOW_NETWORKS allows them`;
}

/** The URL's host as an address or name: no IPv6 brackets, no trailing dot, lower case. */
function hostOf(url: URL): string {
  return url.hostname
    .replace(/^\[(.*)\]$/, '$1')
    .replace(/\.$/, '')
    .toLowerCase();
}

/**
 * The check when an endpoint URL is created or changed (and before each send,
 * since a literal address never goes through DNS). parseEndpointUrl's rules,
 * then UNSAFE_URL when the host is a literal address the policy does not
 * allow, or `localhost` / `*.localhost` (loopback by definition, RFC 6761)
 * while loopback is not allowed. Other host names are checked at connect
 * time by safeLookup.
 */
export function checkUrlAtCreate(url: string | URL, policy: AddressPolicy): URL {
  const parsed = typeof url === 'string' ? parseEndpointUrl(url) : parseEndpointUrl(url.href);
  const host = hostOf(parsed);
  if (isIP(host)) {
    if (!policy.isAllowed(host)) throw new UrlError('UNSAFE_URL', refusal(`url host ${host}`, classifyAddress(host)!));
  } else if (host === 'localhost' || host.endsWith('.localhost')) {
    if (!policy.isAllowed('127.0.0.1') && !policy.isAllowed('::1')) {
      throw new UrlError('UNSAFE_URL', refusal(`url host ${host}`, 'loopback'));
    }
  }
  return parsed;
}

/** A connection refused because the host name resolved to an address the policy does not allow. */
export class UnsafeAddressError extends Error {
  readonly code = 'EUNSAFEADDRESS';
  readonly hostname: string;
  readonly address: string;
  constructor(hostname: string, address: string) {
    super(refusal(`${hostname} resolves to ${address}, which`, classifyAddress(address) ?? 'disallowed'));
    this.name = 'UnsafeAddressError';
    this.hostname = hostname;
    this.address = address;
  }
}

/** How safeLookup resolves names: dns.lookup's `all: true` form. */
export type Resolver = (
  hostname: string,
  options: LookupAllOptions,
  callback: (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void,
) => void;

/**
 * A `lookup` for net/tls/undici connect options that resolves the name and
 * refuses (UnsafeAddressError, code EUNSAFEADDRESS) when any address it
 * resolved to is not allowed; the socket then dials only vetted addresses,
 * never a second resolution. A name with one bad address is refused whole:
 * a public host has no business resolving into a private network.
 */
export function safeLookup(policy: AddressPolicy, resolve: Resolver = dns.lookup): LookupFunction {
  return (hostname, options, callback) => {
    resolve(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) {
        callback(err, options.all ? [] : '');
        return;
      }
      const refused = addresses.find((entry) => !policy.isAllowed(entry.address));
      if (refused || addresses.length === 0) {
        const error: NodeJS.ErrnoException = refused
          ? new UnsafeAddressError(hostname, refused.address)
          : Object.assign(new Error(`${hostname} did not resolve to any address`), { code: 'ENOTFOUND' });
        callback(error, options.all ? [] : '');
        return;
      }
      if (options.all) callback(null, addresses);
      else callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };
}
