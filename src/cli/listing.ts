import { UsageError } from './errors.js';
import { alignTable, type TableOptions } from './format.js';
import { Template, TemplateError } from './template.js';

/**
 * `--format` handling shared by ps, images, history and events, following docker's formatter:
 * a format starting with `table` prints a header and aligns columns on tabs; `\t` and `\n`
 * written literally in the format are turned into real tabs and newlines; `{{json .}}` prints a
 * row's fields as JSON.
 */

export type Row = Record<string, unknown>;

export interface ListingFormat {
  /** The user's --format, or undefined for the command's default table. */
  format?: string;
  defaultTable: string;
  /** Column headers by field name, e.g. { ID: 'CONTAINER ID' }. */
  headers: Record<string, string>;
  quietFormat?: string;
  quiet?: boolean;
  table?: TableOptions;
}

export function compileFormat(source: string): Template {
  try {
    return Template.parse(source);
  } catch (err) {
    if (err instanceof TemplateError) throw new UsageError(err.message);
    throw err;
  }
}

/** A --format for a single object (inspect, version, info): `json` is shorthand for `{{json .}}`. */
export function compileObjectFormat(format: string): Template {
  const source =
    format.trim() === 'json' ? '{{json .}}' : format.replaceAll('\\t', '\t').replaceAll('\\n', '\n');
  return compileFormat(source);
}

/** Renders rows per docker's formatter rules; returns the text to print. */
export function renderRows(rows: Row[], opts: ListingFormat): string {
  let format = opts.quiet ? (opts.quietFormat ?? '{{.ID}}') : (opts.format ?? opts.defaultTable);
  if (format === 'table') format = opts.defaultTable;
  if (format === 'json') format = '{{json .}}';
  const isTable = format.startsWith('table');
  let body = isTable ? format.slice('table'.length) : format;
  body = body.trim().replaceAll('\\t', '\t').replaceAll('\\n', '\n');
  const template = compileFormat(body);
  const lines: string[] = [];
  try {
    if (isTable) {
      const header = new Proxy<Row>(
        {},
        {
          get: (_t, key) => (typeof key === 'string' ? (opts.headers[key] ?? key.toUpperCase()) : undefined),
        },
      );
      lines.push(template.execute(header));
    }
    for (const row of rows) lines.push(template.execute(row));
  } catch (err) {
    if (err instanceof TemplateError) throw new UsageError(`template: ${err.message}`);
    throw err;
  }
  if (isTable)
    return alignTable(
      lines.flatMap((l) => l.split('\n')),
      opts.table,
    );
  return lines.map((l) => `${l}\n`).join('');
}
