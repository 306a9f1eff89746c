import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { encodeName, readName, TYPE_A } from '../../src/network/dns-codec.js';

export { bridgesOf, daemonTag, iptablesLines, sweep } from '../helpers/network-sweep.js';

export function portsOfBridge(bridge: string): string[] {
  try {
    return fs.readdirSync(`/sys/class/net/${bridge}/brif`);
  } catch {
    return [];
  }
}

export function linkExists(name: string): boolean {
  return fs.existsSync(`/sys/class/net/${name}`);
}

/** GET over HTTP with a deadline; resolves with the status and body or an error text. */
export function httpGet(
  url: string,
  timeoutMs = 3000,
): Promise<{ status: number; body: string } | { error: string }> {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err) => resolve({ error: err.message }));
  });
}

/** Polls `check` every 100 ms until it returns true or `timeoutMs` passes. */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A DNS query as busybox nslookup sends it (id, RD, one question). */
export function dnsQuery(id: number, name: string, type = TYPE_A): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0100, 2);
  header.writeUInt16BE(1, 4);
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(type, 0);
  tail.writeUInt16BE(1, 2);
  return Buffer.concat([header, encodeName(name), tail]);
}

/** The A addresses of an answer (names may be compressed). */
export function addressesOf(answer: Buffer): string[] {
  const count = answer.readUInt16BE(6);
  let pos = readName(answer, 12).next + 4;
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    pos = readName(answer, pos).next;
    const type = answer.readUInt16BE(pos);
    const length = answer.readUInt16BE(pos + 8);
    if (type === TYPE_A) out.push([...answer.subarray(pos + 10, pos + 14)].join('.'));
    pos += 10 + length;
  }
  return out;
}

export function udpAsk(host: string, port: number, msg: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket('udp4');
    const timer = setTimeout(() => {
      sock.close();
      reject(new Error('no UDP answer'));
    }, 3000);
    sock.on('message', (answer) => {
      clearTimeout(timer);
      sock.close();
      resolve(answer);
    });
    sock.send(msg, port, host);
  });
}

/** Sends `msgs` on one TCP connection (in one write, pipelined) and collects as many answers. */
export function tcpAsk(host: string, port: number, msgs: Buffer[]): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host });
    const answers: Buffer[] = [];
    let pending = Buffer.alloc(0);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`got ${answers.length} of ${msgs.length} TCP answers`));
    }, 3000);
    sock.on('error', reject);
    sock.on('connect', () =>
      sock.write(
        Buffer.concat(
          msgs.flatMap((m) => {
            const length = Buffer.alloc(2);
            length.writeUInt16BE(m.length, 0);
            return [length, m];
          }),
        ),
      ),
    );
    sock.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        answers.push(pending.subarray(2, 2 + pending.readUInt16BE(0)));
        pending = pending.subarray(2 + pending.readUInt16BE(0));
      }
      if (answers.length === msgs.length) {
        clearTimeout(timer);
        sock.destroy();
        resolve(answers);
      }
    });
  });
}
