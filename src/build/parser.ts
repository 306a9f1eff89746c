import { DockerfileParseError } from './errors.js';

/**
 * Dockerfile text → logical instructions (the line-level grammar; `instructions.ts` gives them
 * meaning). Follows the Dockerfile frontend:
 *
 * - Parser directives (`# syntax=…`, `# escape=…`, `# check=…`) only at the very top, before any
 *   comment, blank line or instruction; each at most once. `escape` is `\` (default) or `` ` ``.
 * - Full-line comments (`#` after optional whitespace) are dropped, also inside continuations;
 *   a `#` elsewhere is part of the text.
 * - An escape token at the end of a line (trailing blanks allowed) continues the instruction on
 *   the next line; the lines are joined without the escape and the newline. Blank lines inside a
 *   continuation are skipped (with a warning, as BuildKit warns).
 * - RUN, COPY and ADD may carry here-documents: each `<<NAME`, `<<-NAME` (leading tabs stripped)
 *   or `<<"NAME"` / `<<'NAME'` (no expansion) word reads the following lines up to a line that is
 *   exactly NAME.
 * - The first word is the instruction (any case); leading `--name[=value]` words are its flags.
 */
export interface Heredoc {
  name: string;
  content: string;
  /** False for a quoted delimiter (`<<"EOF"`): the content is taken literally. */
  expand: boolean;
}

export interface LogicalInstruction {
  /** Upper case, e.g. `RUN`. */
  keyword: string;
  /** First line of the instruction (1-based). */
  line: number;
  /** The instruction as written, continuations joined (what `Step N/M :` prints). */
  original: string;
  /** Flag words with quotes removed, e.g. `--from=build`. */
  flags: string[];
  /** The arguments after the flags, unprocessed. */
  rest: string;
  heredocs: Heredoc[];
}

export interface ParsedDockerfile {
  escapeToken: string;
  /** The `# syntax=` directive, recorded but not acted upon (frontends are not fetched). */
  syntax: string | null;
  instructions: LogicalInstruction[];
  warnings: string[];
}

const DIRECTIVE = /^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.*?)\s*$/;
const KNOWN_DIRECTIVES = new Set(['syntax', 'escape', 'check']);
const HEREDOC_INSTRUCTIONS = new Set(['RUN', 'COPY', 'ADD']);

function isCommentOrBlank(line: string): boolean {
  return /^\s*(#|$)/.test(line);
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export function parseDockerfile(text: string): ParsedDockerfile {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  const result: ParsedDockerfile = { escapeToken: '\\', syntax: null, instructions: [], warnings: [] };
  let i = 0;
  const seen = new Set<string>();
  for (; i < lines.length; i++) {
    const m = DIRECTIVE.exec(lines[i]);
    if (!m) break;
    const key = m[1].toLowerCase();
    if (!KNOWN_DIRECTIVES.has(key)) break;
    if (seen.has(key)) throw new DockerfileParseError(i + 1, `only one ${key} parser directive can be used`);
    seen.add(key);
    if (key === 'escape') {
      if (m[2] !== '\\' && m[2] !== '`') {
        throw new DockerfileParseError(i + 1, `invalid escape token '${m[2]}' does not match ${'`'} or \\`);
      }
      result.escapeToken = m[2];
    } else if (key === 'syntax') result.syntax = m[2];
  }
  const continuation = new RegExp(`${escapeRegex(result.escapeToken)}[ \\t]*$`);

  while (i < lines.length) {
    const first = lines[i];
    i++;
    if (isCommentOrBlank(first)) continue;
    const startLine = i;
    let logical = first.replace(/^\s+/, '');
    let complete = !continuation.test(logical);
    if (!complete) logical = logical.replace(continuation, '');
    let blankInContinuation = false;
    while (!complete && i < lines.length) {
      const next = lines[i];
      i++;
      if (/^\s*#/.test(next)) continue;
      if (/^\s*$/.test(next)) {
        blankInContinuation = true;
        continue;
      }
      if (continuation.test(next)) logical += next.replace(continuation, '');
      else {
        logical += next;
        complete = true;
      }
    }
    if (blankInContinuation) {
      result.warnings.push(`[WARNING]: Empty continuation line found in line ${startLine}`);
    }
    if (logical.trim() === '') continue;
    const instruction = splitInstruction(logical, startLine);
    if (HEREDOC_INSTRUCTIONS.has(instruction.keyword)) {
      for (const marker of findHeredocMarkers(instruction.rest)) {
        const body: string[] = [];
        let terminated = false;
        while (i < lines.length) {
          const raw = lines[i];
          i++;
          const candidate = marker.chomp ? raw.replace(/^\t+/, '') : raw;
          if (candidate === marker.name) {
            terminated = true;
            break;
          }
          body.push(marker.chomp ? candidate : raw);
        }
        if (!terminated) {
          throw new DockerfileParseError(startLine, `unterminated heredoc ${marker.name}`);
        }
        instruction.heredocs.push({
          name: marker.name,
          content: body.length > 0 ? `${body.join('\n')}\n` : '',
          expand: marker.expand,
        });
      }
    }
    result.instructions.push(instruction);
  }
  return result;
}

/** Splits a logical line into keyword, flags and the rest. Also used for ONBUILD triggers. */
export function splitInstruction(logical: string, line: number): LogicalInstruction {
  const m = /^\s*(\S+)\s*([\s\S]*)$/.exec(logical);
  if (!m) throw new DockerfileParseError(line, 'empty instruction');
  const { flags, rest } = extractFlags(m[2]);
  return {
    keyword: m[1].toUpperCase(),
    line,
    original: logical.trim(),
    flags,
    rest: rest.trim(),
    heredocs: [],
  };
}

/**
 * Leading `--flag[=value]` words (quotes removed inside them) and the text after them. A bare `--`
 * ends the flags.
 */
export function extractFlags(text: string): { flags: string[]; rest: string } {
  const flags: string[] = [];
  let pos = 0;
  for (;;) {
    while (pos < text.length && /\s/.test(text[pos])) pos++;
    if (pos >= text.length) return { flags, rest: '' };
    if (!text.startsWith('--', pos)) return { flags, rest: text.slice(pos) };
    let word = '';
    let quote: string | null = null;
    let blankOk = false;
    for (; pos < text.length; pos++) {
      const ch = text[pos];
      if (quote === null) {
        if (/\s/.test(ch)) break;
        if (ch === '"' || ch === "'") {
          quote = ch;
          blankOk = true;
          continue;
        }
        if (ch === '\\') {
          if (pos + 1 === text.length) continue;
          pos++;
          word += text[pos];
          continue;
        }
        word += ch;
      } else {
        if (ch === quote) {
          quote = null;
          continue;
        }
        if (ch === '\\' && pos + 1 < text.length) {
          pos++;
          word += text[pos];
          continue;
        }
        word += ch;
      }
    }
    if (word === '--') return { flags, rest: text.slice(pos) };
    if (blankOk || word.length > 0) flags.push(word);
  }
}

interface HeredocMarker {
  name: string;
  chomp: boolean;
  expand: boolean;
}

/** `<<NAME` words outside quotes, in order. */
export function findHeredocMarkers(text: string): HeredocMarker[] {
  const markers: HeredocMarker[] = [];
  let quote: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quote !== null) {
      if (ch === quote) quote = null;
      else if (ch === '\\' && quote === '"') i++;
      continue;
    }
    if (ch === '\\') {
      i++;
      continue;
    }
    if (ch === '"' || ch === "'") {
      quote = ch;
      continue;
    }
    const atWordStart = i === 0 || /\s/.test(text[i - 1]);
    if (!atWordStart || !text.startsWith('<<', i) || text[i + 2] === '<') continue;
    const m = /^<<(-?)(["']?)([A-Za-z0-9_.-]+)\2(?=\s|$)/.exec(text.slice(i));
    if (!m) continue;
    markers.push({ name: m[3], chomp: m[1] === '-', expand: m[2] === '' });
    i += m[0].length - 1;
  }
  return markers;
}

/**
 * Splits on whitespace outside quotes, keeping quotes and escapes in the words (they are removed
 * when each word is processed): the Dockerfile's `parseWords`, used for ENV, LABEL and ARG.
 */
export function splitWordsKeepingQuotes(text: string, escapeToken: string): string[] {
  const words: string[] = [];
  const chars = Array.from(text);
  let word = '';
  let inWord = false;
  let quote: string | null = null;
  let blankOk = false;
  for (let i = 0; i < chars.length; i++) {
    let ch = chars[i];
    if (quote === null) {
      if (/\s/u.test(ch)) {
        if (inWord && (blankOk || word.length > 0)) words.push(word);
        word = '';
        inWord = false;
        blankOk = false;
        continue;
      }
      inWord = true;
      if (ch === '"' || ch === "'") {
        quote = ch;
        blankOk = true;
      }
      if (ch === escapeToken) {
        if (i + 1 === chars.length) continue;
        word += ch;
        ch = chars[++i];
      }
      word += ch;
      continue;
    }
    if (ch === quote) quote = null;
    else if (ch === escapeToken && quote !== "'") {
      if (i + 1 === chars.length) {
        quote = null;
        continue;
      }
      word += ch;
      ch = chars[++i];
    }
    word += ch;
  }
  if (inWord && (blankOk || word.length > 0)) words.push(word);
  return words;
}

/**
 * The JSON (exec) form: a JSON array of strings. Returns null when the text is not JSON (shell form);
 * a JSON array holding anything but strings is an error, as in dockerd.
 */
export function parseJsonArray(text: string, line: number): string[] | null {
  const trimmed = text.trim();
  if (!trimmed.startsWith('[')) return null;
  let value: unknown;
  try {
    value = JSON.parse(trimmed);
  } catch {
    return null;
  }
  if (!Array.isArray(value)) return null;
  if (!value.every((v) => typeof v === 'string')) {
    throw new DockerfileParseError(
      line,
      'when using JSON array syntax, arrays must be comprised of strings only',
    );
  }
  return value as string[];
}
