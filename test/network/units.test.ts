import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseResolvConf, parseUpstream } from '../../src/network/dns.js';
import {
  aRecord,
  buildResponse,
  encodeName,
  parseQuery,
  RCODE_NOERROR,
  RCODE_NXDOMAIN,
  readName,
  reverseName,
  TYPE_A,
  TYPE_AAAA,
} from '../../src/network/dns-codec.js';
import {
  allocate,
  formatIPv4,
  formatSubnet,
  macForIPv4,
  overlaps,
  parseIPv4,
  parseProcRoutes,
  parseSubnet,
  pickSubnet,
  userSubnetPool,
} from '../../src/network/ipam.js';
import { renderRemoval, renderRules } from '../../src/network/iptables.js';
import { decodeAttrs, encodeAttrs } from '../../src/network/netlink.js';
import { portRequests } from '../../src/network/ports.js';

/** A DNS query as busybox nslookup sends it (id, RD, one question). */
function query(id: number, name: string, type: number): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0100, 2);
  header.writeUInt16BE(1, 4);
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(type, 0);
  tail.writeUInt16BE(1, 2);
  return Buffer.concat([header, encodeName(name), tail]);
}

describe('ipam', () => {
  test('parses, formats and compares subnets', () => {
    assert.equal(formatIPv4(parseIPv4('10.89.3.7')), '10.89.3.7');
    assert.equal(formatSubnet(parseSubnet('10.99.0.0/24')), '10.99.0.0/24');
    assert.equal(formatSubnet(parseSubnet('10.99.0.5/24')), '10.99.0.0/24');
    assert.throws(() => parseSubnet('10.99.0.0'), /CIDR/);
    assert.throws(() => parseIPv4('300.1.1.1'), /invalid IPv4/);
    assert.ok(overlaps(parseSubnet('10.88.0.0/16'), parseSubnet('10.88.4.0/24')));
    assert.ok(!overlaps(parseSubnet('10.88.0.0/16'), parseSubnet('10.89.0.0/24')));
  });

  test('allocates past network, gateway and used addresses, wrapping after the last one', () => {
    const s = parseSubnet('10.89.0.0/29');
    const gw = parseIPv4('10.89.0.1');
    assert.equal(formatIPv4(allocate(s, s, gw, new Set()) ?? 0), '10.89.0.2');
    const used = new Set([parseIPv4('10.89.0.2'), parseIPv4('10.89.0.3')]);
    assert.equal(formatIPv4(allocate(s, s, gw, used) ?? 0), '10.89.0.4');
    // after .6 (the last usable one) it wraps to the first free address
    assert.equal(formatIPv4(allocate(s, s, gw, used, parseIPv4('10.89.0.6')) ?? 0), '10.89.0.4');
    const full = new Set([2, 3, 4, 5, 6].map((i) => parseIPv4(`10.89.0.${i}`)));
    assert.equal(allocate(s, s, gw, full), null);
    const range = parseSubnet('10.89.0.4/30');
    assert.equal(formatIPv4(allocate(s, range, gw, new Set()) ?? 0), '10.89.0.4');
  });

  test('picks a pool subnet that overlaps no route', () => {
    const routes = parseProcRoutes(
      'Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n' +
        'eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n' +
        'strata0\t0000590A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n',
    );
    assert.deepEqual(routes.map(formatSubnet), ['10.89.0.0/24']);
    assert.equal(
      formatSubnet(pickSubnet(userSubnetPool(), routes) ?? { base: 0, prefixLen: 0 }),
      '10.89.1.0/24',
    );
    assert.equal(macForIPv4(parseIPv4('10.88.0.2')), '02:42:0a:58:00:02');
  });
});

describe('dns codec', () => {
  test('reads a query and writes an authoritative answer with A records', () => {
    const q = parseQuery(query(0x1234, 'Web.', TYPE_A));
    assert.equal(q.id, 0x1234);
    assert.ok(q.recursionDesired);
    assert.deepEqual(q.questions, [{ name: 'web', type: TYPE_A, class: 1 }]);
    const answer = buildResponse(
      q,
      RCODE_NOERROR,
      [aRecord('web', '10.89.0.2'), aRecord('web', '10.89.0.3')],
      {
        authoritative: true,
      },
    );
    assert.equal(answer.readUInt16BE(0), 0x1234);
    const flags = answer.readUInt16BE(2);
    assert.ok(flags & 0x8000, 'QR');
    assert.ok(flags & 0x0400, 'AA');
    assert.equal(flags & 0xf, RCODE_NOERROR);
    assert.equal(answer.readUInt16BE(6), 2);
    // question echoed, then the first answer: name, type A, class IN, ttl, 4 bytes of address
    const { next } = readName(answer, 12);
    let pos = next + 4;
    const first = readName(answer, pos);
    assert.equal(first.name, 'web');
    pos = first.next;
    assert.equal(answer.readUInt16BE(pos), TYPE_A);
    assert.equal(answer.readUInt16BE(pos + 8), 4);
    assert.deepEqual([...answer.subarray(pos + 10, pos + 14)], [10, 89, 0, 2]);
  });

  test('follows compression pointers and refuses loops', () => {
    const msg = Buffer.concat([Buffer.alloc(12), encodeName('a.example'), Buffer.from([1, 0x62, 0xc0, 12])]);
    const second = readName(msg, 12 + encodeName('a.example').length);
    assert.equal(second.name, 'b.a.example');
    const loop = Buffer.concat([Buffer.alloc(12), Buffer.from([0xc0, 12])]);
    assert.throws(() => readName(loop, 12), /loop/);
    assert.throws(() => parseQuery(Buffer.alloc(5)), /header/);
  });

  test('NXDOMAIN and empty answers keep the question', () => {
    const q = parseQuery(query(7, 'nosuch', TYPE_AAAA));
    const answer = buildResponse(q, RCODE_NXDOMAIN, []);
    assert.equal(answer.readUInt16BE(2) & 0xf, RCODE_NXDOMAIN);
    assert.equal(answer.readUInt16BE(4), 1);
    assert.equal(answer.readUInt16BE(6), 0);
    assert.equal(reverseName('2.0.89.10.in-addr.arpa'), '10.89.0.2');
    assert.equal(reverseName('example.com'), null);
  });

  test('resolv.conf and upstream parsing', () => {
    const r = parseResolvConf(
      '# c\nnameserver 10.0.0.53\nnameserver ::1\nsearch a.example b.example\noptions ndots:2\n',
    );
    assert.deepEqual(r.nameservers, ['10.0.0.53']);
    assert.deepEqual(r.search, ['a.example', 'b.example']);
    assert.deepEqual(r.options, ['ndots:2']);
    assert.deepEqual(parseUpstream('127.0.0.1:5353'), { host: '127.0.0.1', port: 5353 });
    assert.deepEqual(parseUpstream('127.0.0.1'), { host: '127.0.0.1', port: 53 });
  });
});

describe('iptables rules', () => {
  const state = {
    networks: [
      { bridge: 'strata0', subnet: '10.88.0.0/16', internal: false, gateway: '10.88.0.1' },
      { bridge: 'strata-aaaa', subnet: '10.89.0.0/24', internal: true, gateway: '10.89.0.1' },
    ],
    ports: [
      {
        protocol: 'tcp' as const,
        hostIp: '127.0.0.1',
        hostPort: 8080,
        containerIp: '10.88.0.2',
        containerPort: 80,
      },
    ],
  };

  test('isolates networks, masquerades only external ones, publishes ports', () => {
    const text = renderRules('abc123', state, true);
    assert.match(text, /^-I FORWARD 1 -m comment --comment strata:abc123 -j STRATA-abc123-FWD$/m);
    assert.match(text, /^-A STRATA-abc123-FWD -i strata0 -o strata\+ -j DROP$/m);
    assert.match(text, /^-A STRATA-abc123-FWD -i strata-aaaa -j DROP$/m);
    assert.match(text, /^-A STRATA-abc123-POST -s 10\.88\.0\.0\/16 ! -o strata0 -j MASQUERADE$/m);
    assert.doesNotMatch(text, /-s 10\.89\.0\.0\/24 ! -o strata-aaaa -j MASQUERADE/);
    assert.match(
      text,
      /^-A STRATA-abc123-DNAT -d 127\.0\.0\.1\/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10\.88\.0\.2:80$/m,
    );
    assert.match(text, /^-A STRATA-abc123-DNAT -d 10\.88\.0\.1\/32 -p udp -m udp --dport 53 -j RETURN$/m);
    // the internal network has no accept rule for its traffic to the outside
    assert.doesNotMatch(text, /-i strata-aaaa -j ACCEPT/);
    assert.doesNotMatch(renderRules('abc123', state, false), /-I FORWARD|PREROUTING/);
  });

  test('removal finds our jumps by comment and leaves other rules alone', () => {
    const saved = [
      '*filter',
      ':FORWARD ACCEPT [0:0]',
      ':STRATA-abc123-FWD - [0:0]',
      '-A FORWARD -m comment --comment "strata:abc123" -j STRATA-abc123-FWD',
      '-A FORWARD -j DOCKER-USER',
      '-A STRATA-abc123-FWD -i strata0 -j ACCEPT',
      'COMMIT',
      '*nat',
      ':STRATA-abc123-DNAT - [0:0]',
      ':STRATA-abc123-POST - [0:0]',
      '-A PREROUTING -m addrtype --dst-type LOCAL -m comment --comment "strata:abc123" -j STRATA-abc123-DNAT',
      '-A PREROUTING -m comment --comment "strata:ffffff" -j STRATA-ffffff-DNAT',
      'COMMIT',
    ].join('\n');
    const removal = renderRemoval('abc123', saved, true);
    assert.match(removal, /^-D FORWARD -m comment --comment "strata:abc123" -j STRATA-abc123-FWD$/m);
    assert.match(removal, /^-X STRATA-abc123-FWD$/m);
    assert.match(removal, /^-X STRATA-abc123-POST$/m);
    assert.doesNotMatch(removal, /DOCKER-USER|ffffff/);
    assert.equal(renderRemoval('abc123', '*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n', true), '');
  });
});

describe('ports and netlink encoding', () => {
  test('port bindings: explicit, random, host IP, udp, -P', () => {
    const reqs = portRequests(
      {
        '80/tcp': [
          { HostIp: '', HostPort: '8080' },
          { HostIp: '127.0.0.1', HostPort: '' },
        ],
        '53/udp': [{ HostPort: '53' }],
      },
      { '80/tcp': {}, '9000/tcp': {} },
      true,
    );
    assert.deepEqual(reqs, [
      { protocol: 'tcp', containerPort: 80, hostIp: '', hostPort: 8080 },
      { protocol: 'tcp', containerPort: 80, hostIp: '127.0.0.1', hostPort: 0 },
      { protocol: 'udp', containerPort: 53, hostIp: '', hostPort: 53 },
      { protocol: 'tcp', containerPort: 9000, hostIp: '', hostPort: 0 },
    ]);
    assert.throws(() => portRequests({ '80/xyz': [] }, null, false), /invalid port/);
  });

  test('netlink attributes round-trip with padding and nesting', () => {
    const encoded = encodeAttrs([
      { type: 3, value: Buffer.from('eth0\0') },
      { type: 18, value: [{ type: 1, value: Buffer.from('veth\0') }] },
    ]);
    assert.equal(encoded.length % 4, 0);
    const attrs = decodeAttrs(encoded);
    assert.equal(attrs.get(3)?.toString(), 'eth0\0');
    assert.equal(
      decodeAttrs(attrs.get(18) ?? Buffer.alloc(0))
        .get(1)
        ?.toString(),
      'veth\0',
    );
  });
});
