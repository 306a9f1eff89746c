/**
 * The small part of the DNS message format (RFC 1035 §4) the network DNS server needs: read a query
 * (header + questions, compressed names tolerated), write an answer with A and PTR records. Anything
 * else is forwarded upstream as raw bytes and never parsed.
 */
export const TYPE_A = 1;
export const TYPE_PTR = 12;
export const TYPE_AAAA = 28;
export const CLASS_IN = 1;
export const RCODE_NOERROR = 0;
export const RCODE_FORMERR = 1;
export const RCODE_SERVFAIL = 2;
export const RCODE_NXDOMAIN = 3;
export const RCODE_REFUSED = 5;

export interface Question {
  /** Lower-case, without the trailing dot. */
  name: string;
  type: number;
  class: number;
}

export interface Query {
  id: number;
  flags: number;
  isResponse: boolean;
  opcode: number;
  recursionDesired: boolean;
  questions: Question[];
}

export interface ResourceRecord {
  name: string;
  type: number;
  ttl: number;
  data: Buffer;
}

export class DnsFormatError extends Error {}

/** Reads a (possibly compressed) name at `offset`; returns it and the offset after it. */
export function readName(buf: Buffer, offset: number): { name: string; next: number } {
  const labels: string[] = [];
  let pos = offset;
  let next = -1;
  for (let jumps = 0; ; ) {
    if (pos >= buf.length) throw new DnsFormatError('name runs past the message');
    const len = buf[pos];
    if (len === 0) {
      if (next < 0) next = pos + 1;
      break;
    }
    if ((len & 0xc0) === 0xc0) {
      if (pos + 1 >= buf.length) throw new DnsFormatError('truncated pointer');
      if (++jumps > 32) throw new DnsFormatError('compression loop');
      if (next < 0) next = pos + 2;
      pos = ((len & 0x3f) << 8) | buf[pos + 1];
      continue;
    }
    if ((len & 0xc0) !== 0) throw new DnsFormatError('bad label type');
    if (pos + 1 + len > buf.length) throw new DnsFormatError('label runs past the message');
    labels.push(buf.toString('latin1', pos + 1, pos + 1 + len));
    pos += 1 + len;
    if (labels.join('.').length > 253) throw new DnsFormatError('name too long');
  }
  return { name: labels.join('.').toLowerCase(), next };
}

export function encodeName(name: string): Buffer {
  const trimmed = name.replace(/\.$/, '');
  const parts: Buffer[] = [];
  if (trimmed !== '') {
    for (const label of trimmed.split('.')) {
      const bytes = Buffer.from(label, 'latin1');
      if (bytes.length === 0 || bytes.length > 63) throw new DnsFormatError(`bad label in ${name}`);
      parts.push(Buffer.from([bytes.length]), bytes);
    }
  }
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

export function parseQuery(buf: Buffer): Query {
  if (buf.length < 12) throw new DnsFormatError('shorter than a DNS header');
  const flags = buf.readUInt16BE(2);
  const qdcount = buf.readUInt16BE(4);
  let pos = 12;
  const questions: Question[] = [];
  for (let i = 0; i < qdcount; i++) {
    const { name, next } = readName(buf, pos);
    if (next + 4 > buf.length) throw new DnsFormatError('truncated question');
    questions.push({ name, type: buf.readUInt16BE(next), class: buf.readUInt16BE(next + 2) });
    pos = next + 4;
  }
  return {
    id: buf.readUInt16BE(0),
    flags,
    isResponse: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    recursionDesired: (flags & 0x0100) !== 0,
    questions,
  };
}

/** The largest DNS message over UDP without EDNS (RFC 1035 §4.2.1); larger answers go over TCP. */
export const UDP_MAX_SIZE = 512;
const FLAG_TC = 0x0200;

/**
 * An answer to `query` (its first question echoed) with `answers`; authoritative for our names.
 * Answer names equal to the question's are written as a pointer to it (RFC 1035 §4.1.4). With
 * `maxSize` (UDP), only the records that fit are written and TC is set when any were left out, so
 * the client asks again over TCP.
 */
export function buildResponse(
  query: Pick<Query, 'id' | 'recursionDesired' | 'opcode'> & { questions: Question[] },
  rcode: number,
  answers: ResourceRecord[],
  opts: { authoritative?: boolean; recursionAvailable?: boolean; maxSize?: number } = {},
): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.id, 0);
  let flags = 0x8000 | ((query.opcode & 0xf) << 11) | (rcode & 0xf);
  if (opts.authoritative) flags |= 0x0400;
  if (query.recursionDesired) flags |= 0x0100;
  if (opts.recursionAvailable ?? true) flags |= 0x0080;
  const question = query.questions[0];
  header.writeUInt16BE(question ? 1 : 0, 4);
  const parts: Buffer[] = [header];
  let size = header.length;
  if (question) {
    const qtail = Buffer.alloc(4);
    qtail.writeUInt16BE(question.type, 0);
    qtail.writeUInt16BE(question.class, 2);
    const qname = encodeName(question.name);
    parts.push(qname, qtail);
    size += qname.length + 4;
  }
  const pointerToQuestion = Buffer.from([0xc0, 12]);
  let written = 0;
  for (const rr of answers) {
    const name =
      question && rr.name.replace(/\.$/, '').toLowerCase() === question.name
        ? pointerToQuestion
        : encodeName(rr.name);
    const fixed = Buffer.alloc(10);
    fixed.writeUInt16BE(rr.type, 0);
    fixed.writeUInt16BE(CLASS_IN, 2);
    fixed.writeUInt32BE(rr.ttl, 4);
    fixed.writeUInt16BE(rr.data.length, 8);
    const length = name.length + fixed.length + rr.data.length;
    if (opts.maxSize !== undefined && size + length > opts.maxSize) {
      flags |= FLAG_TC;
      break;
    }
    parts.push(name, fixed, rr.data);
    size += length;
    written++;
  }
  header.writeUInt16BE(flags, 2);
  header.writeUInt16BE(written, 6);
  return Buffer.concat(parts);
}

/** True when the message (an answer) has TC set: the sender had more than fitted. */
export function isTruncated(message: Buffer): boolean {
  return message.length >= 4 && (message.readUInt16BE(2) & FLAG_TC) !== 0;
}

export function aRecord(name: string, ip: string, ttl = 600): ResourceRecord {
  return { name, type: TYPE_A, ttl, data: Buffer.from(ip.split('.').map(Number)) };
}

export function ptrRecord(name: string, target: string, ttl = 600): ResourceRecord {
  return { name, type: TYPE_PTR, ttl, data: encodeName(target) };
}

/** `4.3.2.1.in-addr.arpa` → `1.2.3.4`, or null for any other name. */
export function reverseName(name: string): string | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.in-addr\.arpa$/.exec(name);
  return m ? `${m[4]}.${m[3]}.${m[2]}.${m[1]}` : null;
}

/** A minimal error answer built from the raw query bytes (when it could not even be parsed). */
export function errorFromRaw(raw: Buffer, rcode: number): Buffer | null {
  if (raw.length < 12) return null;
  const header = Buffer.from(raw.subarray(0, 12));
  header.writeUInt16BE(0x8000 | (raw.readUInt16BE(2) & 0x7900) | 0x80 | rcode, 2);
  header.writeUInt16BE(0, 4);
  header.writeUInt32BE(0, 6);
  header.writeUInt16BE(0, 10);
  return header;
}
