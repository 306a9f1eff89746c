/**
 * A subset of Go's text/template, enough for docker's `--format` strings: fields (`{{.Names}}`,
 * `{{.State.Status}}`), method-like fields with arguments (`{{.Label "k"}}`), pipelines
 * (`{{.Names | upper}}`), variables, `if`/`else`/`range`/`with`/`end`, and the functions docker
 * adds (`json`, `join`, `split`, `upper`, `lower`, `title`, `truncate`, `pad`) plus Go's builtins.
 */

export class TemplateError extends Error {}

type Value = unknown;
type Func = (...args: Value[]) => Value;

type Operand =
  | { kind: 'field'; base: 'dot' | 'var'; name?: string; path: string[] }
  | { kind: 'ident'; name: string }
  | { kind: 'literal'; value: Value }
  | { kind: 'pipe'; pipeline: Pipeline };

interface Pipeline {
  decl: string[];
  commands: Operand[][];
}

type Node =
  | { kind: 'text'; text: string }
  | { kind: 'action'; pipeline: Pipeline }
  | { kind: 'if' | 'with' | 'range'; pipeline: Pipeline; body: Node[]; orElse: Node[] };

const FUNCS: Record<string, Func> = {
  json: (v) => goJson(v),
  upper: (s) => String(s).toUpperCase(),
  lower: (s) => String(s).toLowerCase(),
  title: (s) => String(s).replace(/(^|\s)(\S)/g, (_m, a: string, b: string) => a + b.toUpperCase()),
  split: (s, sep) => String(s).split(String(sep)),
  join: (list, sep) => (Array.isArray(list) ? list.map(printValue).join(String(sep)) : printValue(list)),
  truncate: (s, n) => Array.from(String(s)).slice(0, Number(n)).join(''),
  pad: (s, l, r) => ' '.repeat(Number(l)) + String(s) + ' '.repeat(Number(r)),
  len: (v) =>
    Array.isArray(v) || typeof v === 'string' ? v.length : isObject(v) ? Object.keys(v).length : 0,
  index: (v, ...keys) => {
    let cur: Value = v;
    for (const k of keys)
      cur = isObject(cur) || Array.isArray(cur) ? (cur as Record<string, Value>)[String(k)] : undefined;
    return cur;
  },
  print: (...args) => args.map(printValue).join(''),
  println: (...args) => `${args.map(printValue).join(' ')}\n`,
  printf: (fmt, ...args) => sprintf(String(fmt), args),
  not: (v) => !isTrue(v),
  and: (...args) => args.find((a) => !isTrue(a)) ?? args[args.length - 1],
  or: (...args) => args.find((a) => isTrue(a)) ?? args[args.length - 1],
  eq: (a, ...rest) => rest.some((b) => a === b),
  ne: (a, b) => a !== b,
  lt: (a, b) => (a as number) < (b as number),
  le: (a, b) => (a as number) <= (b as number),
  gt: (a, b) => (a as number) > (b as number),
  ge: (a, b) => (a as number) >= (b as number),
};

function isObject(v: Value): v is Record<string, Value> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isTrue(v: Value): boolean {
  if (v === undefined || v === null || v === false || v === 0 || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (isObject(v)) return Object.keys(v).length > 0;
  return true;
}

/** Go's json.Marshal: like JSON.stringify but with <, > and & escaped. */
export function goJson(v: Value): string {
  return (JSON.stringify(v === undefined ? null : v) ?? 'null').replace(
    /[<>&]/g,
    (c) => `\\u00${c.charCodeAt(0).toString(16)}`,
  );
}

/** fmt's %v for decoded JSON values. */
export function printValue(v: Value): string {
  if (v === undefined) return '<no value>';
  if (v === null) return '<nil>';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (Array.isArray(v)) return `[${v.map(printValue).join(' ')}]`;
  if (isObject(v)) {
    const keys = Object.keys(v)
      .filter((k) => typeof v[k] !== 'function')
      .sort();
    return `map[${keys.map((k) => `${k}:${printValue(v[k])}`).join(' ')}]`;
  }
  return String(v);
}

function sprintf(fmt: string, args: Value[]): string {
  let i = 0;
  return fmt.replace(/%([-0-9.]*)([vsdqf%])/g, (_m, width: string, verb: string) => {
    if (verb === '%') return '%';
    const arg = args[i++];
    let s = verb === 'q' ? JSON.stringify(printValue(arg)) : printValue(arg);
    if (verb === 'f') s = Number(arg).toFixed(Number(width.split('.')[1] ?? 6));
    const w = Number.parseInt(width, 10);
    if (!Number.isNaN(w) && verb !== 'f') s = w < 0 ? s.padEnd(-w) : s.padStart(w);
    return s;
  });
}

// ---- parsing ------------------------------------------------------------------------------

interface Token {
  type: 'field' | 'var' | 'ident' | 'string' | 'number' | 'pipe' | 'lparen' | 'rparen' | 'decl' | 'comma';
  text: string;
}

function lexAction(src: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (/\s/.test(c)) {
      i++;
    } else if (c === '|') {
      tokens.push({ type: 'pipe', text: c });
      i++;
    } else if (c === '(') {
      tokens.push({ type: 'lparen', text: c });
      i++;
    } else if (c === ')') {
      tokens.push({ type: 'rparen', text: c });
      i++;
    } else if (c === ',') {
      tokens.push({ type: 'comma', text: c });
      i++;
    } else if (src.startsWith(':=', i) || c === '=') {
      tokens.push({ type: 'decl', text: c === '=' ? '=' : ':=' });
      i += c === '=' ? 1 : 2;
    } else if (c === '"') {
      let j = i + 1;
      while (j < src.length && src[j] !== '"') j += src[j] === '\\' ? 2 : 1;
      if (j >= src.length) throw new TemplateError('unterminated quoted string');
      tokens.push({ type: 'string', text: JSON.parse(src.slice(i, j + 1)) as string });
      i = j + 1;
    } else if (c === '`') {
      const j = src.indexOf('`', i + 1);
      if (j < 0) throw new TemplateError('unterminated raw quoted string');
      tokens.push({ type: 'string', text: src.slice(i + 1, j) });
      i = j + 1;
    } else {
      const m = /^(\$[\w]*|\.?[\w.]*|-?\d+(?:\.\d+)?)/.exec(src.slice(i));
      const word = m?.[0] ?? '';
      if (!word) throw new TemplateError(`unexpected "${c}" in command`);
      if (word.startsWith('$')) tokens.push({ type: 'var', text: word });
      else if (word.startsWith('.')) tokens.push({ type: 'field', text: word });
      else if (/^-?\d/.test(word)) tokens.push({ type: 'number', text: word });
      else tokens.push({ type: 'ident', text: word });
      i += word.length;
      // `$x.Field` continues as a field path on the variable.
      if (word.startsWith('$') && src[i] === '.') {
        const rest = /^[\w.]*/.exec(src.slice(i))?.[0] ?? '';
        tokens[tokens.length - 1].text += rest;
        i += rest.length;
      }
    }
  }
  return tokens;
}

class PipelineParser {
  private pos = 0;
  constructor(private readonly tokens: Token[]) {}

  parse(): Pipeline {
    const pipeline = this.pipeline();
    if (this.pos < this.tokens.length) throw new TemplateError(`unexpected "${this.tokens[this.pos].text}"`);
    return pipeline;
  }

  private pipeline(): Pipeline {
    const decl: string[] = [];
    // `$v := …` or `$k, $v := …`
    let look = this.pos;
    const names: string[] = [];
    while (this.tokens[look]?.type === 'var') {
      names.push(this.tokens[look].text);
      look++;
      if (this.tokens[look]?.type === 'comma') look++;
      else break;
    }
    if (names.length > 0 && this.tokens[look]?.type === 'decl') {
      decl.push(...names);
      this.pos = look + 1;
    }
    const commands: Operand[][] = [this.command()];
    while (this.tokens[this.pos]?.type === 'pipe') {
      this.pos++;
      commands.push(this.command());
    }
    return { decl, commands };
  }

  private command(): Operand[] {
    const operands: Operand[] = [];
    for (;;) {
      const t = this.tokens[this.pos];
      if (!t || t.type === 'pipe' || t.type === 'rparen') break;
      this.pos++;
      switch (t.type) {
        case 'field':
          operands.push({ kind: 'field', base: 'dot', path: t.text.split('.').filter(Boolean) });
          break;
        case 'var': {
          const [name, ...path] = t.text.split('.');
          operands.push({ kind: 'field', base: 'var', name, path });
          break;
        }
        case 'string':
          operands.push({ kind: 'literal', value: t.text });
          break;
        case 'number':
          operands.push({ kind: 'literal', value: Number(t.text) });
          break;
        case 'ident':
          if (t.text === 'true' || t.text === 'false')
            operands.push({ kind: 'literal', value: t.text === 'true' });
          else if (t.text === 'nil') operands.push({ kind: 'literal', value: null });
          else if (FUNCS[t.text]) operands.push({ kind: 'ident', name: t.text });
          else throw new TemplateError(`function "${t.text}" not defined`);
          break;
        case 'lparen': {
          const inner = this.pipeline();
          if (this.tokens[this.pos]?.type !== 'rparen') throw new TemplateError('unclosed left paren');
          this.pos++;
          operands.push({ kind: 'pipe', pipeline: inner });
          break;
        }
        default:
          throw new TemplateError(`unexpected "${t.text}" in command`);
      }
    }
    if (operands.length === 0) throw new TemplateError('missing value for command');
    return operands;
  }
}

function parsePipeline(src: string): Pipeline {
  return new PipelineParser(lexAction(src)).parse();
}

interface RawPiece {
  text?: string;
  action?: string;
}

function splitTemplate(src: string): RawPiece[] {
  const pieces: RawPiece[] = [];
  let i = 0;
  while (i < src.length) {
    const open = src.indexOf('{{', i);
    if (open < 0) {
      pieces.push({ text: src.slice(i) });
      break;
    }
    let text = src.slice(i, open);
    let start = open + 2;
    if (src[start] === '-' && /\s/.test(src[start + 1] ?? '')) {
      text = text.replace(/\s+$/, '');
      start += 1;
    }
    const close = src.indexOf('}}', start);
    if (close < 0) throw new TemplateError('unclosed action');
    let end = close;
    let trimRight = false;
    if (src[close - 1] === '-' && /\s/.test(src[close - 2] ?? '')) {
      end = close - 1;
      trimRight = true;
    }
    if (text) pieces.push({ text });
    pieces.push({ action: src.slice(start, end).trim() });
    i = close + 2;
    if (trimRight) while (i < src.length && /\s/.test(src[i])) i++;
  }
  return pieces;
}

function buildTree(pieces: RawPiece[]): Node[] {
  let pos = 0;
  // Reads nodes until `else …` or `end`; returns the terminating action (undefined at EOF).
  const list = (): { nodes: Node[]; stop?: string } => {
    const nodes: Node[] = [];
    while (pos < pieces.length) {
      const p = pieces[pos++];
      if (p.text !== undefined) {
        nodes.push({ kind: 'text', text: p.text });
        continue;
      }
      const action = p.action ?? '';
      if (action.startsWith('/*')) continue;
      const keyword = /^(if|range|with|else|end)\b/.exec(action)?.[1];
      if (keyword === 'end' || keyword === 'else') return { nodes, stop: action };
      if (keyword === 'if' || keyword === 'range' || keyword === 'with') {
        nodes.push(block(keyword, action.slice(keyword.length)));
        continue;
      }
      nodes.push({ kind: 'action', pipeline: parsePipeline(action) });
    }
    return { nodes };
  };
  const block = (kind: 'if' | 'range' | 'with', pipelineSrc: string): Node => {
    const pipeline = parsePipeline(pipelineSrc);
    const body = list();
    let orElse: Node[] = [];
    if (body.stop === undefined) throw new TemplateError(`unexpected EOF in ${kind}`);
    if (body.stop === 'else') {
      const rest = list();
      if (rest.stop !== 'end') throw new TemplateError(`expected end; found ${rest.stop ?? 'EOF'}`);
      orElse = rest.nodes;
    } else if (body.stop.startsWith('else')) {
      // `else if …` / `else with …`: a nested block that shares our `end`.
      const chained = /^else\s+(if|with)\b(.*)$/s.exec(body.stop);
      if (!chained) throw new TemplateError(`unexpected {{${body.stop}}}`);
      orElse = [block(chained[1] as 'if' | 'with', chained[2])];
    }
    return { kind, pipeline, body: body.nodes, orElse };
  };
  const top = list();
  if (top.stop !== undefined) throw new TemplateError(`unexpected {{${top.stop}}}`);
  return top.nodes;
}

// ---- execution ----------------------------------------------------------------------------

type Scope = Map<string, Value>;

export class Template {
  private constructor(private readonly nodes: Node[]) {}

  static parse(src: string): Template {
    try {
      return new Template(buildTree(splitTemplate(src)));
    } catch (err) {
      if (err instanceof TemplateError) throw new TemplateError(`template parsing error: ${err.message}`);
      throw err;
    }
  }

  execute(data: Value): string {
    const scope: Scope = new Map([['$', data]]);
    return this.run(this.nodes, data, scope);
  }

  private run(nodes: Node[], dot: Value, scope: Scope): string {
    let out = '';
    for (const node of nodes) {
      switch (node.kind) {
        case 'text':
          out += node.text;
          break;
        case 'action': {
          const v = this.pipeline(node.pipeline, dot, scope);
          if (node.pipeline.decl.length === 0) out += printValue(v);
          break;
        }
        case 'if': {
          const inner = new Map(scope);
          const v = this.pipeline(node.pipeline, dot, inner);
          out += this.run(isTrue(v) ? node.body : node.orElse, dot, inner);
          break;
        }
        case 'with': {
          const inner = new Map(scope);
          const v = this.pipeline(node.pipeline, dot, inner);
          out += isTrue(v) ? this.run(node.body, v, inner) : this.run(node.orElse, dot, inner);
          break;
        }
        case 'range': {
          const inner = new Map(scope);
          const decl = node.pipeline.decl;
          const v = this.pipeline({ decl: [], commands: node.pipeline.commands }, dot, inner);
          const entries: [Value, Value][] = Array.isArray(v)
            ? v.map((e, i) => [i, e])
            : isObject(v)
              ? Object.keys(v)
                  .sort()
                  .map((k) => [k, v[k]])
              : typeof v === 'number'
                ? Array.from({ length: v }, (_x, i) => [i, i])
                : [];
          if (entries.length === 0) {
            out += this.run(node.orElse, dot, inner);
            break;
          }
          for (const [key, elem] of entries) {
            if (decl.length === 1) inner.set(decl[0], elem);
            if (decl.length === 2) {
              inner.set(decl[0], key);
              inner.set(decl[1], elem);
            }
            out += this.run(node.body, elem, inner);
          }
          break;
        }
      }
    }
    return out;
  }

  private pipeline(p: Pipeline, dot: Value, scope: Scope): Value {
    let piped: Value;
    let hasPiped = false;
    for (const cmd of p.commands) {
      piped = this.command(cmd, dot, scope, hasPiped ? [piped] : []);
      hasPiped = true;
    }
    if (p.decl.length > 0) scope.set(p.decl[p.decl.length - 1], piped);
    return piped;
  }

  private command(cmd: Operand[], dot: Value, scope: Scope, piped: Value[]): Value {
    const [head, ...rest] = cmd;
    const args = (): Value[] => [...rest.map((o) => this.operand(o, dot, scope, [])), ...piped];
    if (head.kind === 'ident') return FUNCS[head.name](...args());
    if (head.kind === 'field' && (rest.length > 0 || piped.length > 0))
      return this.operand(head, dot, scope, args());
    if (rest.length > 0 || piped.length > 0) throw new TemplateError("can't give argument to non-function");
    return this.operand(head, dot, scope, []);
  }

  private operand(o: Operand, dot: Value, scope: Scope, callArgs: Value[]): Value {
    switch (o.kind) {
      case 'literal':
        return o.value;
      case 'ident':
        return FUNCS[o.name]();
      case 'pipe':
        return this.pipeline(o.pipeline, dot, scope);
      case 'field': {
        let cur: Value = o.base === 'dot' ? dot : scope.get(o.name ?? '$');
        if (o.base === 'var' && !scope.has(o.name ?? '$'))
          throw new TemplateError(`undefined variable: ${o.name}`);
        o.path.forEach((key, i) => {
          const holder = cur;
          cur = isObject(holder) ? holder[key] : undefined;
          if (typeof cur === 'function') {
            const isLast = i === o.path.length - 1;
            cur = (cur as Func).apply(holder, isLast ? callArgs : []);
          }
        });
        return cur;
      }
    }
  }
}

/** Parses and runs a template once. */
export function renderTemplate(src: string, data: Value): string {
  return Template.parse(src).execute(data);
}
