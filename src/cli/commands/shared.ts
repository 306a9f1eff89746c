import * as fs from 'node:fs';
import { CliError, UsageError } from '../errors.js';
import { isTerminal } from '../terminal.js';

/** Helpers shared by the command files: filters, confirmation prompts, archive output. */

/** `--filter a=b --filter c=d` → the CLI's filter JSON `{"a":{"b":true},"c":{"d":true}}`. */
export function encodeFilters(filters: string[], extra: Record<string, string[]> = {}): string | undefined {
  const out: Record<string, Record<string, boolean>> = {};
  const add = (key: string, value: string): void => {
    out[key] ??= {};
    out[key][value] = true;
  };
  for (const f of filters) {
    const eq = f.indexOf('=');
    if (eq <= 0) throw new UsageError(`bad format of filter (expected name=value)`, 125);
    add(f.slice(0, eq).trim().toLowerCase(), f.slice(eq + 1));
  }
  for (const [key, values] of Object.entries(extra)) for (const v of values) add(key, v);
  return Object.keys(out).length > 0 ? JSON.stringify(out) : undefined;
}

/** Refuses to dump a tar archive onto a terminal, as docker does. */
export function archiveOutput(file: string | undefined): NodeJS.WritableStream {
  if (file) return fs.createWriteStream(file, { mode: 0o644 });
  if (isTerminal(process.stdout)) {
    throw new CliError('cowardly refusing to save to a terminal. Use the -o flag or redirect');
  }
  return process.stdout;
}

/** Asks "Are you sure…? [y/N]" on the terminal; any answer but y/yes declines. */
export async function confirm(warning: string): Promise<boolean> {
  process.stdout.write(`${warning}\nAre you sure you want to continue? [y/N] `);
  const answer = await new Promise<string>((resolve) => {
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('utf8');
      if (text.includes('\n')) done();
    };
    const done = (): void => {
      process.stdin.off('data', onData);
      process.stdin.off('end', done);
      process.stdin.pause();
      resolve(text.split('\n')[0].trim());
    };
    process.stdin.on('data', onData);
    process.stdin.once('end', done);
  });
  return /^y(es)?$/i.test(answer);
}
