import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import bcrypt from 'bcryptjs';
import { z } from 'zod';
import { InvalidArgument } from '../../common/errors.js';
import { type UserEntry, usersSchema } from '../config.js';
import type { Principal } from './acl.js';

/** How long a verified password is remembered, so Basic auth does not pay bcrypt on every request. */
const VERIFIED_TTL_MS = 60_000;
const VERIFIED_MAX = 4096;
/** Compared against when the user is unknown, so the answer takes as long as for a known user. */
let dummyHash: string | undefined;

/** The registry's users: names with bcrypt password hashes and groups. */
export class UserDirectory {
  private readonly verified = new Map<string, number>();

  constructor(private readonly users: ReadonlyMap<string, UserEntry>) {}

  /** The principal for valid credentials, or null. */
  async authenticate(user: string, password: string): Promise<Principal | null> {
    const entry = this.users.get(user);
    dummyHash ??= bcrypt.hashSync('strata-registry-unknown-user', 10);
    const hash = entry?.password ?? dummyHash;
    const key = createHash('sha256').update(`${user}\0${password}\0${hash}`).digest('hex');
    const until = this.verified.get(key);
    if (entry !== undefined && until !== undefined && until > Date.now()) {
      return { user, groups: entry.groups };
    }
    let ok = false;
    try {
      ok = await bcrypt.compare(password, hash);
    } catch {
      ok = false;
    }
    if (!ok || entry === undefined) return null;
    if (this.verified.size >= VERIFIED_MAX) this.verified.clear();
    this.verified.set(key, Date.now() + VERIFIED_TTL_MS);
    return { user, groups: entry.groups };
  }
}

/** Reads a users file: JSON in the config's `users` shape, or htpasswd lines `name:<bcrypt hash>`. */
export function loadUsersFile(file: string): Map<string, UserEntry> {
  const text = fs.readFileSync(file, 'utf8');
  if (text.trimStart().startsWith('{')) {
    const result = usersSchema.safeParse(JSON.parse(text));
    if (!result.success)
      throw new InvalidArgument(`invalid users file ${file}: ${z.prettifyError(result.error)}`);
    return new Map(Object.entries(result.data));
  }
  const out = new Map<string, UserEntry>();
  for (const [index, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    const hash = line.slice(colon + 1);
    if (colon <= 0 || !/^\$2[aby]\$/.test(hash)) {
      throw new InvalidArgument(`${file}:${index + 1}: want name:<bcrypt hash>`);
    }
    out.set(line.slice(0, colon), { password: hash, groups: [] });
  }
  return out;
}

export async function hashPassword(password: string, rounds = 10): Promise<string> {
  return bcrypt.hash(password, rounds);
}
