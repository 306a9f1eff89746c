import type { ReadStream, WriteStream } from 'node:tty';

/**
 * The local terminal during `run -it`, `exec -it` and `attach`: raw mode so every keystroke
 * (including Ctrl-C) goes to the container, and size tracking so the container's pty follows the
 * window. Whatever happens, `restore()` must run before the process exits.
 */

export interface TerminalSize {
  rows: number;
  cols: number;
}

export function isTerminal(stream: NodeJS.ReadStream | NodeJS.WriteStream): boolean {
  return stream.isTTY === true;
}

export function terminalSize(): TerminalSize | undefined {
  const out = process.stdout as WriteStream;
  if (!out.isTTY || !out.columns || !out.rows) return undefined;
  return { rows: out.rows, cols: out.columns };
}

/** Puts stdin in raw mode; returns the function that puts it back (safe to call twice). */
export function enterRawMode(): () => void {
  const stdin = process.stdin as ReadStream;
  if (!stdin.isTTY) return () => {};
  stdin.setRawMode(true);
  let restored = false;
  const restore = (): void => {
    if (restored) return;
    restored = true;
    try {
      stdin.setRawMode(false);
    } catch {
      // stdin already closed
    }
  };
  process.once('exit', restore);
  return restore;
}

/** Calls `onResize` now and on every SIGWINCH; returns the function that stops listening. */
export function watchTerminalSize(onResize: (size: TerminalSize) => void): () => void {
  const out = process.stdout as WriteStream;
  if (!out.isTTY) return () => {};
  const handler = (): void => {
    const size = terminalSize();
    if (size) onResize(size);
  };
  handler();
  out.on('resize', handler);
  return () => out.off('resize', handler);
}
