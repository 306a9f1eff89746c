/**
 * Dockerfile word processing: quote removal, escapes and variable substitution, as the Dockerfile
 * frontend does it (not a shell: no command substitution, no globbing, no arithmetic).
 *
 * - `'…'` is literal; `"…"` expands `$` and honours the escape token before `"`, `$` and itself;
 *   outside quotes the escape token makes the next character literal.
 * - `$NAME`, `${NAME}`, `${NAME:-word}` / `${NAME-word}` (default when empty / unset),
 *   `${NAME:+word}` / `${NAME+word}` (alternative when non-empty / set), `${NAME:?msg}` /
 *   `${NAME?msg}` (error), and the pattern forms `${NAME#glob}`, `##`, `%`, `%%`, `/glob/repl`,
 *   `//glob/repl`. The `word` parts are processed recursively (quotes, nested `$`).
 * - `processWords` splits on unquoted whitespace, including whitespace produced by unquoted
 *   expansions; `processWord` keeps whitespace.
 *
 * Errors are `LexError`s with the message only; callers add the Dockerfile line.
 */
export class LexError extends Error {}

export type Env = ReadonlyMap<string, string>;

const EOF = '';

class WordCollector {
  private word = '';
  private inWord = false;
  readonly words: string[] = [];

  addChar(ch: string): void {
    if (isSpace(ch)) {
      if (this.inWord && this.word.length > 0) {
        this.words.push(this.word);
        this.word = '';
        this.inWord = false;
      }
    } else {
      this.addRawChar(ch);
    }
  }

  addRawChar(ch: string): void {
    this.word += ch;
    this.inWord = true;
  }

  addString(text: string): void {
    for (const ch of text) this.addChar(ch);
  }

  addRawString(text: string): void {
    this.word += text;
    this.inWord = true;
  }

  finish(): string[] {
    if (this.word.length > 0) {
      this.words.push(this.word);
      this.word = '';
      this.inWord = false;
    }
    return this.words;
  }
}

function isSpace(ch: string): boolean {
  return /^\s$/u.test(ch);
}

function isNameChar(ch: string): boolean {
  return /^[\p{L}\p{N}_]$/u.test(ch);
}

const SPECIAL_PARAMS = new Set(['@', '*', '#', '?', '-', '$', '!', '0']);

class Scanner {
  private readonly chars: string[];
  private pos = 0;
  constructor(text: string) {
    this.chars = Array.from(text);
  }
  peek(): string {
    return this.pos < this.chars.length ? this.chars[this.pos] : EOF;
  }
  next(): string {
    return this.pos < this.chars.length ? this.chars[this.pos++] : EOF;
  }
}

class WordProcessor {
  private readonly scanner: Scanner;

  constructor(
    text: string,
    private readonly env: Env,
    private readonly escapeToken: string,
    /** Here-document mode: quotes are ordinary characters, only `$` expands (`\$` is a literal `$`). */
    private readonly raw = false,
  ) {
    this.scanner = new Scanner(text);
  }

  /** Processes up to `stop` (consumed) or the end. Returns the joined text and the split words. */
  processStopOn(stop: string): { text: string; words: string[] } {
    let result = '';
    const words = new WordCollector();
    for (;;) {
      const ch = this.scanner.peek();
      if (ch === EOF) {
        if (stop !== EOF) throw new LexError(`syntax error: missing '${stop}'`);
        break;
      }
      if (stop !== EOF && ch === stop) {
        this.scanner.next();
        return { text: result, words: words.finish() };
      }
      if (this.raw && ch !== '$') {
        let c = this.scanner.next();
        if (c === this.escapeToken && this.scanner.peek() === '$') c = this.scanner.next();
        result += c;
        continue;
      }
      if (ch === "'") {
        const part = this.singleQuote();
        result += part;
        words.addRawString(part);
      } else if (ch === '"') {
        const part = this.doubleQuote();
        result += part;
        words.addRawString(part);
      } else if (ch === '$') {
        const part = this.dollar();
        result += part;
        words.addString(part);
      } else {
        let c = this.scanner.next();
        if (c === this.escapeToken) {
          c = this.scanner.next();
          if (c === EOF) break;
          words.addRawChar(c);
        } else {
          words.addChar(c);
        }
        result += c;
      }
    }
    return { text: result, words: words.finish() };
  }

  private singleQuote(): string {
    this.scanner.next();
    let out = '';
    for (;;) {
      const ch = this.scanner.next();
      if (ch === EOF)
        throw new LexError('unexpected end of statement while looking for matching single-quote');
      if (ch === "'") return out;
      out += ch;
    }
  }

  private doubleQuote(): string {
    this.scanner.next();
    let out = '';
    for (;;) {
      const ch = this.scanner.peek();
      if (ch === EOF)
        throw new LexError('unexpected end of statement while looking for matching double-quote');
      if (ch === '"') {
        this.scanner.next();
        return out;
      }
      if (ch === '$') {
        out += this.dollar();
        continue;
      }
      let c = this.scanner.next();
      if (c === this.escapeToken) {
        const following = this.scanner.peek();
        if (following === EOF) continue;
        if (following === '"' || following === '$' || following === this.escapeToken) c = this.scanner.next();
      }
      out += c;
    }
  }

  private name(): string {
    let name = '';
    for (;;) {
      const ch = this.scanner.peek();
      if (ch === EOF) return name;
      if (name === '' && /^\p{N}$/u.test(ch)) {
        while (/^\p{N}$/u.test(this.scanner.peek())) name += this.scanner.next();
        return name;
      }
      if (name === '' && SPECIAL_PARAMS.has(ch)) return this.scanner.next();
      if (!isNameChar(ch)) return name;
      name += this.scanner.next();
    }
  }

  private dollar(): string {
    this.scanner.next();
    if (this.scanner.peek() !== '{') {
      const name = this.name();
      if (name === '') return '$';
      return this.env.get(name) ?? '';
    }
    this.scanner.next();
    const first = this.scanner.peek();
    if (first === EOF) throw new LexError("syntax error: missing '}'");
    if (first === '{' || first === '}' || first === ':') throw new LexError('syntax error: bad substitution');
    const name = this.name();
    if (name === '') throw new LexError('syntax error: bad substitution');
    const value = this.env.get(name);
    const isSet = value !== undefined;
    const ch = this.scanner.next();
    switch (ch) {
      case '}':
        return value ?? '';
      case '?': {
        const { text } = this.processStopOn('}');
        if (!isSet) throw new LexError(`${name}: ${text === '' ? 'is not allowed to be unset' : text}`);
        return value;
      }
      case '-': {
        const { text } = this.processStopOn('}');
        return isSet ? value : text;
      }
      case '+': {
        const { text } = this.processStopOn('}');
        return isSet ? text : '';
      }
      case ':': {
        const modifier = this.scanner.next();
        const { text } = this.processStopOn('}');
        const current = value ?? '';
        switch (modifier) {
          case '-':
            return current === '' ? text : current;
          case '+':
            return current === '' ? '' : text;
          case '?':
            if (current === '')
              throw new LexError(`${name}: ${text === '' ? 'is not allowed to be empty' : text}`);
            return current;
          default:
            throw new LexError(`unsupported modifier (${modifier}) in substitution`);
        }
      }
      case '#':
      case '%': {
        const greedy = this.scanner.peek() === ch;
        if (greedy) this.scanner.next();
        const { text: pattern } = this.processStopOn('}');
        return trimPattern(value ?? '', pattern, ch === '#', greedy);
      }
      case '/': {
        const all = this.scanner.peek() === '/';
        if (all) this.scanner.next();
        const { text: pattern } = this.processStopOn('/');
        const { text: replacement } = this.processStopOn('}');
        return replacePattern(value ?? '', pattern, replacement, all);
      }
      case EOF:
        throw new LexError("syntax error: missing '}'");
      default:
        throw new LexError(`unsupported modifier (${ch}) in substitution`);
    }
  }
}

/** A shell glob (`*`, `?`, `[…]`, `\x`) as an anchored-free regular expression source. */
function globSource(pattern: string): string {
  let out = '';
  const chars = Array.from(pattern);
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i];
    if (c === '*') out += '[\\s\\S]*';
    else if (c === '?') out += '[\\s\\S]';
    else if (c === '\\' && i + 1 < chars.length) out += escapeRegex(chars[++i]);
    else if (c === '[') {
      const end = chars.indexOf(']', i + 2);
      if (end === -1) {
        out += '\\[';
        continue;
      }
      let body = chars.slice(i + 1, end).join('');
      if (body.startsWith('!') || body.startsWith('^')) body = `^${body.slice(1)}`;
      out += `[${body.replace(/\\/g, '\\\\')}]`;
      i = end;
    } else out += escapeRegex(c);
  }
  return out;
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

function trimPattern(value: string, pattern: string, prefix: boolean, greedy: boolean): string {
  const re = new RegExp(`^(?:${globSource(pattern)})$`, 'u');
  const chars = Array.from(value);
  const lengths = [...Array(chars.length + 1).keys()];
  if (greedy) lengths.reverse();
  for (const n of lengths) {
    const part = prefix ? chars.slice(0, n).join('') : chars.slice(chars.length - n).join('');
    if (re.test(part)) return prefix ? chars.slice(n).join('') : chars.slice(0, chars.length - n).join('');
  }
  return value;
}

function replacePattern(value: string, pattern: string, replacement: string, all: boolean): string {
  if (pattern === '') return value;
  const re = new RegExp(globSource(pattern), all ? 'gu' : 'u');
  return value.replace(re, () => replacement);
}

/** A word processor for one escape token (`\` by default, `` ` `` with `# escape=``). */
export class ShellLex {
  constructor(readonly escapeToken = '\\') {}

  /** One word: quotes removed, variables expanded, whitespace kept. */
  processWord(text: string, env: Env): string {
    return new WordProcessor(text, env, this.escapeToken).processStopOn(EOF).text;
  }

  /** Words split on unquoted whitespace (expansion results included), quotes removed. */
  processWords(text: string, env: Env): string[] {
    return new WordProcessor(text, env, this.escapeToken).processStopOn(EOF).words;
  }

  /** Variables expanded, everything else (quotes, other escapes, newlines) kept: here-documents. */
  expandVariables(text: string, env: Env): string {
    return new WordProcessor(text, env, this.escapeToken, true).processStopOn(EOF).text;
  }
}
