// biome-ignore-all lint/suspicious/noTemplateCurlyInString: Dockerfile variables are the subject of these tests
import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LexError, ShellLex } from '../../src/build/shell-lex.js';

const env = new Map([
  ['A', 'alpha'],
  ['EMPTY', ''],
  ['SPACED', 'one two'],
  ['PATHV', '/usr/local/bin/tool.tar.gz'],
]);
const lex = new ShellLex();
const word = (text: string) => lex.processWord(text, env);
const words = (text: string) => lex.processWords(text, env);

describe('ShellLex.processWord', () => {
  it('expands $VAR and ${VAR}, unset as empty', () => {
    assert.equal(word('$A'), 'alpha');
    assert.equal(word('${A}x'), 'alphax');
    assert.equal(word('x$A/y'), 'xalpha/y');
    assert.equal(word('$UNSET-'), '-');
    assert.equal(word('a$'), 'a$');
    assert.equal(word('$-'), '');
  });

  it('implements :- - :+ + :? ? on unset, empty and set variables', () => {
    assert.equal(word('${UNSET:-def}'), 'def');
    assert.equal(word('${EMPTY:-def}'), 'def');
    assert.equal(word('${A:-def}'), 'alpha');
    assert.equal(word('${UNSET-def}'), 'def');
    assert.equal(word('${EMPTY-def}'), '');
    assert.equal(word('${A:+alt}'), 'alt');
    assert.equal(word('${EMPTY:+alt}'), '');
    assert.equal(word('${UNSET:+alt}'), '');
    assert.equal(word('${EMPTY+alt}'), 'alt');
    assert.equal(word('${UNSET+alt}'), '');
    assert.equal(word('${A:?must}'), 'alpha');
    assert.throws(() => word('${EMPTY:?needs a value}'), /EMPTY: needs a value/);
    assert.throws(() => word('${UNSET?}'), /UNSET: is not allowed to be unset/);
  });

  it('processes the default word recursively (nested variables and quotes)', () => {
    assert.equal(word('${UNSET:-${A}-x}'), 'alpha-x');
    assert.equal(word('${UNSET:-"a b"}'), 'a b');
    assert.equal(word('${UNSET:-\\}}'), '}');
  });

  it('supports the prefix, suffix and replacement patterns', () => {
    assert.equal(word('${PATHV#*/}'), 'usr/local/bin/tool.tar.gz');
    assert.equal(word('${PATHV##*/}'), 'tool.tar.gz');
    assert.equal(word('${PATHV%.*}'), '/usr/local/bin/tool.tar');
    assert.equal(word('${PATHV%%.*}'), '/usr/local/bin/tool');
    assert.equal(word('${A/l/L}'), 'aLpha');
    assert.equal(word('${PATHV//\\//_}'), '_usr_local_bin_tool.tar.gz');
  });

  it('removes quotes; single quotes are literal, double quotes expand', () => {
    assert.equal(word(`'$A'`), '$A');
    assert.equal(word('"$A b"'), 'alpha b');
    assert.equal(word('"a\\"b"'), 'a"b');
    assert.equal(word('"a\\$A"'), 'a$A');
    assert.equal(word('"a\\nb"'), 'a\\nb');
    assert.equal(word('\\$A'), '$A');
    assert.equal(word('a\\ b'), 'a b');
  });

  it('reports malformed input', () => {
    assert.throws(() => word('${A'), LexError);
    assert.throws(() => word('${}'), /bad substitution/);
    assert.throws(() => word('${A:x}'), /unsupported modifier/);
    assert.throws(() => word('"open'), /matching double-quote/);
    assert.throws(() => word("'open"), /matching single-quote/);
  });

  it('honours another escape token', () => {
    const tick = new ShellLex('`');
    assert.equal(tick.processWord('a`$A', env), 'a$A');
    assert.equal(tick.processWord('C:\\path', env), 'C:\\path');
  });
});

describe('ShellLex.processWords', () => {
  it('splits on unquoted whitespace, including whitespace from unquoted expansions', () => {
    assert.deepEqual(words('a b  c'), ['a', 'b', 'c']);
    assert.deepEqual(words('"a b" c'), ['a b', 'c']);
    assert.deepEqual(words('$SPACED x'), ['one', 'two', 'x']);
    assert.deepEqual(words('"$SPACED" x'), ['one two', 'x']);
    assert.deepEqual(words('80/tcp ${UNSET:-443}'), ['80/tcp', '443']);
  });
});

describe('ShellLex.expandVariables (here-documents)', () => {
  it('expands variables and keeps quotes, newlines and other escapes', () => {
    assert.equal(lex.expandVariables('say "$A" \'x\'\n\\n \\$A\n', env), 'say "alpha" \'x\'\n\\n $A\n');
  });
});
