import type { LookupAddress } from 'node:dns';
import type { LookupFunction } from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  checkUrlAtCreate,
  classifyAddress,
  createAddressPolicy,
  isPublicAddress,
  parseEndpointUrl,
  type Resolver,
  safeLookup,
  UnsafeAddressError,
  UrlError,
} from '../../src/webhooks/outbound-safety.ts';

const LOOPBACK = ['127.0.0.0/8', '::1/128'];

function urlError(fn: () => unknown): UrlError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(UrlError);
    return error as UrlError;
  }
  throw new Error('expected a UrlError');
}

describe('endpoint URLs', () => {
  it('accepts absolute http and https URLs', () => {
    expect(parseEndpointUrl('https://hooks.example.com/dispatch?token=abc').hostname).toBe('hooks.example.com');
    expect(parseEndpointUrl('http://example.com:8080/x').port).toBe('8080');
    expect(parseEndpointUrl('HTTPS://EXAMPLE.com').href).toBe('https://example.com/');
  });

  it('refuses what is not an absolute http(s) URL as BAD_USER_INPUT', () => {
    for (const url of [
      '',
      '   ',
      'example.com/hook',
      '/hook',
      'ftp://example.com/',
      'file:///etc/passwd',
      'javascript:alert(1)',
      'gopher://example.com',
      'ws://example.com',
      'http://',
      'http://exa mple.com/',
      'https://[::1',
    ]) {
      expect(urlError(() => parseEndpointUrl(url)).code, url).toBe('BAD_USER_INPUT');
    }
    expect(urlError(() => parseEndpointUrl('ftp://example.com/')).message).toMatch(/http or https, got ftp/);
  });

  it('refuses credentials in the URL, pointing at headers instead', () => {
    for (const url of ['https://user:pass@example.com/', 'https://user@example.com/', 'https://:secret@example.com/']) {
      const error = urlError(() => parseEndpointUrl(url));
      expect(error.code).toBe('BAD_USER_INPUT');
      expect(error.message).toMatch(/credentials.*header/);
    }
  });

  it('refuses absurdly long URLs', () => {
    expect(urlError(() => parseEndpointUrl(`https://example.com/${'a'.repeat(5000)}`)).message).toMatch(/at most 2048/);
  });
});

describe('public and non-public addresses', () => {
  const nonPublic: Array<[string, RegExp]> = [
    ['0.0.0.0', /this network/],
    ['0.1.2.3', /this network/],
    ['10.0.0.1', /private/],
    ['10.255.255.255', /private/],
    ['172.16.0.1', /private/],
    ['172.31.255.254', /private/],
    ['192.168.1.1', /private/],
    ['100.64.0.1', /carrier-grade NAT/],
    ['100.127.255.254', /carrier-grade NAT/],
    ['127.0.0.1', /loopback/],
    ['127.255.255.254', /loopback/],
    ['169.254.169.254', /link-local/],
    ['192.0.0.8', /IETF/],
    ['192.0.2.10', /documentation/],
    ['198.51.100.7', /documentation/],
    ['203.0.113.200', /documentation/],
    ['192.88.99.1', /6to4 relay/],
    ['198.18.0.1', /benchmarking/],
    ['198.19.255.255', /benchmarking/],
    ['224.0.0.1', /multicast/],
    ['239.255.255.250', /multicast/],
    ['240.0.0.1', /reserved/],
    ['255.255.255.255', /broadcast/],
    ['::', /unspecified/],
    ['::1', /loopback/],
    ['0:0:0:0:0:0:0:1', /loopback/],
    ['::ffff:127.0.0.1', /loopback \(IPv4-mapped 127\.0\.0\.1\)/],
    ['::ffff:7f00:1', /loopback \(IPv4-mapped 127\.0\.0\.1\)/],
    ['::ffff:10.1.2.3', /private/],
    ['::ffff:169.254.169.254', /link-local/],
    ['::ffff:0.0.0.0', /this network/],
    ['::127.0.0.1', /IPv4-compatible/],
    ['::8.8.8.8', /IPv4-compatible/],
    ['64:ff9b::127.0.0.1', /loopback \(NAT64/],
    ['64:ff9b::a00:1', /private \(NAT64 10\.0\.0\.1\)/],
    ['64:ff9b:1::1', /local-use NAT64/],
    ['2002:7f00:1::', /loopback \(6to4 127\.0\.0\.1\)/],
    ['2002:c0a8:101::1', /private \(6to4 192\.168\.1\.1\)/],
    ['2002:a9fe:a9fe::1', /link-local \(6to4 169\.254\.169\.254\)/],
    ['fe80::1', /link-local/],
    ['fe80::1%eth0', /link-local/],
    ['febf:ffff::1', /link-local/],
    ['fc00::1', /unique-local/],
    ['fd12:3456:789a::1', /unique-local/],
    ['fec0::1', /site-local/],
    ['ff02::1', /multicast/],
    ['ff0e::1', /multicast/],
    ['2001:db8::1', /documentation/],
    ['3fff::1', /documentation/],
    ['2001::1', /Teredo/],
    ['2001:2::1', /benchmarking/],
    ['100::1', /discard/],
    ['1::1', /not global unicast/],
    ['4000::1', /not global unicast/],
    ['5f00::1', /not global unicast/],
    ['not-an-ip', /not an IP address/],
    ['example.com', /not an IP address/],
    ['', /not an IP address/],
  ];

  it.each(nonPublic)('%s is not public', (ip, kind) => {
    expect(isPublicAddress(ip)).toBe(false);
    expect(classifyAddress(ip)).toMatch(kind);
  });

  const publicAddresses = [
    '1.1.1.1',
    '8.8.8.8',
    '9.255.255.255',
    '11.0.0.1',
    '100.63.255.255',
    '100.128.0.0',
    '172.15.255.255',
    '172.32.0.0',
    '192.167.255.255',
    '192.169.0.0',
    '198.17.255.255',
    '198.20.0.0',
    '223.255.255.255',
    '2606:4700:4700::1111',
    '2a00:1450:4001:80b::200e',
    '2001:4860:4860::8888',
    '::ffff:8.8.8.8',
    '64:ff9b::808:808',
    '2002:808:808::1',
  ];

  it.each(publicAddresses)('%s is public', (ip) => {
    expect(isPublicAddress(ip)).toBe(true);
    expect(classifyAddress(ip)).toBeNull();
  });
});

describe('address policy', () => {
  it('allows only public addresses by default', () => {
    const policy = createAddressPolicy();
    expect(policy.isAllowed('93.184.216.34')).toBe(true);
    expect(policy.isAllowed('127.0.0.1')).toBe(false);
    expect(policy.isAllowed('::1')).toBe(false);
    expect(policy.isAllowed('localhost')).toBe(false);
  });

  it('adds the networks the operator allows, and only those', () => {
    const policy = createAddressPolicy(['127.0.0.0/8', '::1/128', '10.20.0.0/16']);
    expect(policy.allowNetworks).toEqual(['127.0.0.0/8', '::1/128', '10.20.0.0/16']);
    expect(policy.isAllowed('127.0.0.1')).toBe(true);
    expect(policy.isAllowed('127.9.9.9')).toBe(true);
    expect(policy.isAllowed('::1')).toBe(true);
    expect(policy.isAllowed('::ffff:127.0.0.1')).toBe(true);
    expect(policy.isAllowed('10.20.3.4')).toBe(true);
    expect(policy.isAllowed('10.21.3.4')).toBe(false);
    expect(policy.isAllowed('169.254.169.254')).toBe(false);
    expect(policy.isAllowed('fe80::1')).toBe(false);
    expect(policy.isAllowed('8.8.8.8')).toBe(true);
  });

  it('refuses malformed networks', () => {
    for (const cidr of ['127.0.0.0', '127.0.0.0/33', '::1/129', 'localhost/8', '10.0.0.0/x', '', 'fe80::1%eth0/64']) {
      expect(() => createAddressPolicy([cidr]), cidr).toThrow(/is not a network/);
    }
  });
});

describe('checking a URL when an endpoint is created', () => {
  const strict = createAddressPolicy();
  const local = createAddressPolicy(LOOPBACK);

  it('refuses literal non-public addresses as UNSAFE_URL, in every spelling', () => {
    for (const url of [
      'http://127.0.0.1/',
      'http://127.1/',
      'http://2130706433/',
      'http://0x7f000001/',
      'http://0177.0.0.1/',
      'http://0.0.0.0:8080/',
      'http://10.0.0.5/hook',
      'http://169.254.169.254/latest/meta-data/',
      'http://[::1]/',
      'http://[::ffff:127.0.0.1]/',
      'http://[::ffff:a9fe:a9fe]/',
      'http://[fd00::1]/',
      'http://[fe80::1]/',
      'https://[64:ff9b::7f00:1]/',
      'https://[2002:a9fe:a9fe::]/',
      'https://224.0.0.1/',
      'http://localhost:3000/',
      'http://LOCALHOST./',
      'http://api.localhost/',
    ]) {
      const error = urlError(() => checkUrlAtCreate(url, strict));
      expect(error.code, url).toBe('UNSAFE_URL');
      expect(error.message).toMatch(/DISPATCH_ALLOW_NETWORKS/);
    }
    expect(urlError(() => checkUrlAtCreate('http://169.254.169.254/', strict)).message).toMatch(
      /169\.254\.169\.254 is a link-local address/,
    );
  });

  it('leaves host names to the connect-time check', () => {
    expect(checkUrlAtCreate('https://hooks.example.com/x', strict).hostname).toBe('hooks.example.com');
    expect(checkUrlAtCreate('https://127.0.0.1.nip.io/', strict).hostname).toBe('127.0.0.1.nip.io');
  });

  it('accepts public literal addresses', () => {
    expect(checkUrlAtCreate('https://93.184.216.34/hook', strict).hostname).toBe('93.184.216.34');
    expect(checkUrlAtCreate('https://[2606:4700:4700::1111]/', strict).hostname).toBe('[2606:4700:4700::1111]');
  });

  it('accepts loopback when the operator allows it', () => {
    expect(checkUrlAtCreate('http://127.0.0.1:4000/hook', local).port).toBe('4000');
    expect(checkUrlAtCreate('http://[::1]:4000/hook', local).port).toBe('4000');
    expect(checkUrlAtCreate('http://localhost:4000/hook', local).hostname).toBe('localhost');
    expect(checkUrlAtCreate(new URL('http://127.0.0.1/'), local).hostname).toBe('127.0.0.1');
    expect(urlError(() => checkUrlAtCreate('http://10.0.0.1/', local)).code).toBe('UNSAFE_URL');
  });

  it('applies the URL rules first: a bad URL is BAD_USER_INPUT, not UNSAFE_URL', () => {
    expect(urlError(() => checkUrlAtCreate('ftp://127.0.0.1/', local)).code).toBe('BAD_USER_INPUT');
    expect(urlError(() => checkUrlAtCreate('http://a:b@127.0.0.1/', local)).code).toBe('BAD_USER_INPUT');
  });
});

/** Calls a lookup the way net.connect does and returns what it answered. */
function lookupWith(lookup: LookupFunction, hostname: string, all: boolean) {
  return new Promise<{ err: NodeJS.ErrnoException | null; address: string | LookupAddress[]; family?: number }>(
    (resolve) => {
      lookup(hostname, all ? { all: true } : {}, (err, address, family) => resolve({ err, address, family }));
    },
  );
}

function fakeResolver(answers: Record<string, LookupAddress[]>): Resolver {
  return (hostname, _options, callback) => {
    const addresses = answers[hostname];
    setImmediate(() => {
      if (addresses) callback(null, addresses);
      else
        callback(
          Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND', syscall: 'getaddrinfo' }),
          [],
        );
    });
  };
}

describe('checking the resolved address at connect time', () => {
  it('refuses localhost when loopback is not allowed', async () => {
    const { err } = await lookupWith(safeLookup(createAddressPolicy()), 'localhost', false);
    expect(err).toBeInstanceOf(UnsafeAddressError);
    expect(err!.code).toBe('EUNSAFEADDRESS');
    expect(err!.message).toMatch(/localhost resolves to .*loopback/);
    const all = await lookupWith(safeLookup(createAddressPolicy()), 'localhost', true);
    expect(all.err!.code).toBe('EUNSAFEADDRESS');
  });

  it('accepts localhost when 127.0.0.0/8 and ::1/128 are allowed', async () => {
    const lookup = safeLookup(createAddressPolicy(LOOPBACK));
    const one = await lookupWith(lookup, 'localhost', false);
    expect(one.err).toBeNull();
    expect(['127.0.0.1', '::1']).toContain(one.address);
    expect([4, 6]).toContain(one.family);
    const all = await lookupWith(lookup, 'localhost', true);
    expect(all.err).toBeNull();
    expect((all.address as LookupAddress[]).length).toBeGreaterThan(0);
  });

  it('passes public answers through, in both lookup forms', async () => {
    const answers = {
      'hooks.example.com': [
        { address: '93.184.216.34', family: 4 },
        { address: '2606:2800:220:1::248', family: 6 },
      ],
    };
    const lookup = safeLookup(createAddressPolicy(), fakeResolver(answers));
    expect(await lookupWith(lookup, 'hooks.example.com', false)).toEqual({
      err: null,
      address: '93.184.216.34',
      family: 4,
    });
    expect(await lookupWith(lookup, 'hooks.example.com', true)).toEqual({
      err: null,
      address: answers['hooks.example.com'],
      family: undefined,
    });
  });

  it('refuses a name when any of its addresses is not allowed (DNS rebinding, split answers)', async () => {
    const answers = {
      'rebind.example.com': [{ address: '169.254.169.254', family: 4 }],
      'mixed.example.com': [
        { address: '93.184.216.34', family: 4 },
        { address: '10.0.0.7', family: 4 },
      ],
      'mapped.example.com': [{ address: '::ffff:127.0.0.1', family: 6 }],
    };
    const lookup = safeLookup(createAddressPolicy(), fakeResolver(answers));
    for (const name of Object.keys(answers)) {
      for (const all of [false, true]) {
        const { err } = await lookupWith(lookup, name, all);
        expect(err, name).toBeInstanceOf(UnsafeAddressError);
        expect((err as UnsafeAddressError).hostname).toBe(name);
      }
    }
    const { err } = await lookupWith(lookup, 'mixed.example.com', false);
    expect((err as UnsafeAddressError).address).toBe('10.0.0.7');
    expect(err!.message).toMatch(/mixed\.example\.com resolves to 10\.0\.0\.7, which is a private address/);
  });

  it('passes DNS failures through unchanged', async () => {
    const { err } = await lookupWith(safeLookup(createAddressPolicy(), fakeResolver({})), 'nx.example.com', false);
    expect(err!.code).toBe('ENOTFOUND');
    const empty = await lookupWith(
      safeLookup(createAddressPolicy(), fakeResolver({ 'empty.example.com': [] })),
      'empty.example.com',
      true,
    );
    expect(empty.err!.code).toBe('ENOTFOUND');
  });

  it('asks the resolver for every address, keeping the caller’s family', async () => {
    const seen: object[] = [];
    const resolver: Resolver = (_hostname, options, callback) => {
      seen.push(options);
      callback(null, [{ address: '93.184.216.34', family: 4 }]);
    };
    const lookup = safeLookup(createAddressPolicy(), resolver);
    await new Promise((resolve) => lookup('a.example.com', { family: 4 }, resolve));
    expect(seen).toEqual([{ family: 4, all: true }]);
  });
});
