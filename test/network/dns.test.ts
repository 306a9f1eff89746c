import assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { DnsServer, type NameResolver } from '../../src/network/dns.js';
import {
  aRecord,
  buildResponse,
  isTruncated,
  parseQuery,
  RCODE_NOERROR,
} from '../../src/network/dns-codec.js';
import { addressesOf, dnsQuery as query, tcpAsk, udpAsk } from './helpers.js';

/**
 * The network DNS server over real sockets on loopback: UDP answers cut to 512 bytes with TC, the
 * same query over TCP answered whole, and forwarding to a fake upstream (UDP, then TCP on TC).
 * Nothing leaves 127.0.0.1.
 */
const many = Array.from({ length: 100 }, (_, i) => `10.99.${i >> 8}.${(i & 0xff) + 1}`);

describe('network DNS server (UDP and TCP)', () => {
  let server: DnsServer;
  let upstreamUdp: dgram.Socket;
  let upstreamTcp: net.Server;
  let upstreamPort = 0;
  const seen = { udp: 0, tcp: 0 };

  before(async () => {
    // A fake upstream: "big.example" has 60 addresses; over UDP it sends none of them and sets TC.
    const bigAnswer = (msg: Buffer, maxSize?: number) => {
      const q = parseQuery(msg);
      const records = Array.from({ length: 60 }, (_, i) =>
        aRecord(q.questions[0]?.name ?? '', `10.77.0.${i + 1}`),
      );
      return buildResponse(q, RCODE_NOERROR, records, maxSize ? { maxSize } : {});
    };
    upstreamUdp = dgram.createSocket('udp4');
    upstreamUdp.on('message', (msg, rinfo) => {
      seen.udp++;
      // 100 bytes: the cut keeps no record at all, as a real server may.
      upstreamUdp.send(bigAnswer(msg, 100), rinfo.port, rinfo.address);
    });
    await new Promise<void>((r) => upstreamUdp.bind(0, '127.0.0.1', () => r()));
    upstreamPort = upstreamUdp.address().port;
    upstreamTcp = net.createServer((sock) => {
      seen.tcp++;
      sock.once('data', (chunk: Buffer) => {
        const reply = bigAnswer(chunk.subarray(2, 2 + chunk.readUInt16BE(0)));
        const length = Buffer.alloc(2);
        length.writeUInt16BE(reply.length, 0);
        sock.end(Buffer.concat([length, reply]));
      });
    });
    await new Promise<void>((r) => upstreamTcp.listen(upstreamPort, '127.0.0.1', () => r()));
    const resolver: NameResolver = {
      lookup: (_n, _c, name) => (name === 'web' ? many : name === 'db' ? ['10.99.9.9'] : null),
      reverse: () => undefined,
      upstreams: () => [{ host: '127.0.0.1', port: upstreamPort }],
    };
    server = new DnsServer('n1', '127.0.0.1', resolver, 0);
    await server.start();
  });

  after(() => {
    server?.close();
    upstreamUdp?.close();
    upstreamTcp?.close();
  });

  test('a small answer over UDP is whole, with the answer names compressed', async () => {
    const answer = await udpAsk('127.0.0.1', server.boundPort, query(1, 'db'));
    assert.equal(isTruncated(answer), false);
    assert.deepEqual(addressesOf(answer), ['10.99.9.9']);
    // header 12 + question (4 + 4) + one record (pointer 2 + 10 + 4)
    assert.equal(answer.length, 12 + 8 + 16);
  });

  test('a 100-replica name: cut to 512 bytes with TC over UDP, whole over TCP', async () => {
    const udp = await udpAsk('127.0.0.1', server.boundPort, query(2, 'web'));
    assert.ok(udp.length <= 512, `${udp.length} bytes over UDP`);
    assert.equal(isTruncated(udp), true, 'TC set');
    const cut = addressesOf(udp);
    assert.ok(cut.length > 0 && cut.length < 100, `${cut.length} records fitted`);
    const [tcp] = await tcpAsk('127.0.0.1', server.boundPort, [query(3, 'web')]);
    assert.equal(tcp.readUInt16BE(0), 3);
    assert.equal(isTruncated(tcp), false);
    assert.deepEqual(addressesOf(tcp).sort(), [...many].sort());
  });

  test('several queries pipelined on one TCP connection are all answered', async () => {
    const answers = await tcpAsk('127.0.0.1', server.boundPort, [
      query(10, 'db'),
      query(11, 'web'),
      query(12, 'db'),
    ]);
    assert.deepEqual(answers.map((a) => a.readUInt16BE(0)).sort(), [10, 11, 12]);
    const web = answers.find((a) => a.readUInt16BE(0) === 11);
    assert.equal(addressesOf(web ?? Buffer.alloc(12)).length, 100);
  });

  test('outside names: over UDP the truncated upstream answer is relayed; over TCP it is fetched whole over TCP', async () => {
    const before = { ...seen };
    const udp = await udpAsk('127.0.0.1', server.boundPort, query(20, 'big.example'));
    assert.equal(isTruncated(udp), true);
    assert.equal(seen.udp, before.udp + 1);
    assert.equal(seen.tcp, before.tcp, 'a UDP client retries over TCP itself');
    const [tcp] = await tcpAsk('127.0.0.1', server.boundPort, [query(21, 'big.example')]);
    assert.equal(tcp.readUInt16BE(0), 21);
    assert.equal(isTruncated(tcp), false);
    assert.equal(addressesOf(tcp).length, 60);
    assert.equal(seen.udp, before.udp + 2, 'UDP first');
    assert.equal(seen.tcp, before.tcp + 1, 'then TCP on TC');
  });
});
