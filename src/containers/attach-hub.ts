import type { Duplex } from 'node:stream';
import { muxFrame } from '../api/hijack.js';
import { logger } from '../common/log.js';
import { type AttachConnection, connectAttach } from '../runtime/attach.js';

const log = logger('attach');
/** A client that reads slower than this much buffered output is dropped rather than stall conmon. */
const MAX_CLIENT_BACKLOG = 32 * 1024 * 1024;

/**
 * Fans a container's conmon attach socket out to HTTP clients (docker attach / run). One seqpacket
 * connection per container, opened only while someone is attached (or stdin must be fed). Output is
 * multiplexed (8-byte frames) unless the container has a TTY. Stdin from any stdin-attached client goes
 * to the container; with StdinOnce the first such client's EOF closes the container's stdin.
 */
export interface AttachClient {
  socket: Duplex;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

export class AttachHub {
  private readonly clients = new Set<AttachClient>();
  private connection: AttachConnection | null = null;
  private connecting: Promise<void> | null = null;
  /** Stdin that arrived before the connection exists (e.g. `echo x | docker run -i` sends it before start). */
  private pendingInput: Buffer[] = [];
  private pendingStdinEnd = false;
  private stdinClosed = false;

  constructor(
    private readonly bundleDir: string,
    private readonly tty: boolean,
    private readonly stdinOnce: boolean,
    private readonly openStdin: boolean,
  ) {}

  get hasClients(): boolean {
    return this.clients.size > 0;
  }

  get needsConnection(): boolean {
    return this.clients.size > 0 || this.pendingInput.length > 0 || this.pendingStdinEnd;
  }

  /** Adds a hijacked client. Call `connect()` when the container runs (immediately if it already does). */
  addClient(client: AttachClient, initialInput: Buffer): void {
    this.clients.add(client);
    const drop = () => {
      this.clients.delete(client);
    };
    client.socket.on('close', drop);
    client.socket.on('error', drop);
    if (client.stdin && this.openStdin) {
      if (initialInput.length > 0) this.input(initialInput);
      client.socket.on('data', (d: Buffer) => this.input(d));
      client.socket.on('end', () => {
        if (this.stdinOnce) this.endInput();
      });
      // A socket that readRequestBody paused stays paused when a 'data' listener is added.
      client.socket.resume();
    } else {
      client.socket.resume();
    }
  }

  private input(data: Buffer): void {
    if (this.stdinClosed) return;
    if (this.connection) this.connection.write(data);
    else this.pendingInput.push(Buffer.from(data));
  }

  private endInput(): void {
    if (this.stdinClosed) return;
    if (this.connection) {
      this.stdinClosed = true;
      this.connection.end();
    } else this.pendingStdinEnd = true;
  }

  /** Connects to conmon's attach socket (once conmon reported the pid, before the process runs). */
  connect(): Promise<void> {
    if (this.connection) return Promise.resolve();
    if (this.connecting) return this.connecting;
    this.connecting = connectAttach(this.bundleDir)
      .then((conn) => {
        this.connection = conn;
        conn.onOutput((stream, data) => this.broadcast(stream, data));
        conn.onClose(() => this.finish());
        for (const chunk of this.pendingInput) conn.write(chunk);
        this.pendingInput = [];
        if (this.pendingStdinEnd) {
          this.stdinClosed = true;
          conn.end();
        }
      })
      .catch((err: Error) => {
        log.warn('attach connect failed', { dir: this.bundleDir, error: err.message });
        this.finish();
      })
      .finally(() => {
        this.connecting = null;
      });
    return this.connecting;
  }

  private broadcast(stream: 1 | 2, data: Buffer): void {
    const frame = this.tty ? data : muxFrame(stream, data);
    for (const client of this.clients) {
      if (stream === 1 && !client.stdout) continue;
      if (stream === 2 && !client.stderr) continue;
      const s = client.socket;
      if (s.destroyed) continue;
      if (s.writableLength > MAX_CLIENT_BACKLOG) {
        s.destroy();
        continue;
      }
      s.write(frame);
    }
  }

  /** The container's output ended (conmon closed the socket): close every client. */
  finish(): void {
    for (const client of this.clients) {
      if (!client.socket.destroyed) client.socket.end();
    }
    this.clients.clear();
    this.connection = null;
    this.pendingInput = [];
  }

  /**
   * The container is gone (exit or removal): let output still queued on conmon's socket reach the
   * clients — conmon closes the socket once it has drained it, which ends them — and only force the end
   * after `graceMs`. The exit file can be seen before the last output packets have been read.
   */
  finishAfterDrain(graceMs = 2000): void {
    if (!this.connection && !this.connecting) {
      this.finish();
      return;
    }
    setTimeout(() => this.finish(), graceMs).unref();
  }

  /** Detaches without ending clients' view of the container (daemon shutdown). */
  close(): void {
    this.connection?.destroy();
    this.finish();
  }

  /** True when stdin must stay open for this container (affects conmon's --leave-stdin-open). */
  get keepsStdinOpen(): boolean {
    return this.openStdin && !this.stdinOnce;
  }
}
