import * as net from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';

/**
 * One download client of bench/registry-server, run as a worker thread so that concurrent clients
 * run in parallel like separate programs. It is as light as an HTTP client can be, so that the bench
 * measures the servers rather than itself: one connection per GET, the response read into one reused
 * 1 MiB buffer (the socket's `onread`, no allocation per read), the head parsed by hand, the body
 * counted and checked against Content-Length and the expected size. Node's own HTTP client costs
 * 0.4–1.2 ms of CPU per MiB here, more than either server, and on 2 CPUs that made the clients,
 * not the servers, what the concurrent-pull figure measured.
 *
 * workerData: { host, port, paths: string[], sizes: number[] }. The worker posts 'ready', starts on
 * the first message it receives (so that thread start-up stays out of the timing), then posts the
 * bytes received in all, or throws (the worker's 'error' event) on a wrong status or a short body.
 */
export interface PullJob {
  host: string;
  port: number;
  paths: string[];
  sizes: number[];
}

const MAX_HEAD = 64 * 1024;

function get(host: string, port: number, path: string, buffer: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    let head = '';
    let length = -1;
    let received = 0;
    let settled = false;
    const finish = (err: Error | null): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      if (err === null) resolve(received);
      else reject(err);
    };
    const socket = net.connect({
      host,
      port,
      onread: {
        buffer,
        callback(n: number, buf: Uint8Array): boolean {
          let body = n;
          if (length < 0) {
            head += Buffer.from(buf.buffer, buf.byteOffset, n).toString('latin1');
            const end = head.indexOf('\r\n\r\n');
            if (end < 0) {
              if (head.length > MAX_HEAD) finish(new Error(`${path}: response head too long`));
              return !settled;
            }
            const status = head.slice(9, 12);
            if (!head.startsWith('HTTP/1.') || status !== '200') {
              finish(new Error(`${path}: status ${JSON.stringify(head.slice(0, 12))}`));
              return false;
            }
            const declared = /\r\ncontent-length: *(\d+)\r\n/i.exec(head);
            if (declared === null) {
              finish(new Error(`${path}: no Content-Length`));
              return false;
            }
            length = Number(declared[1]);
            body = head.length - end - 4;
          }
          received += body;
          if (received >= length) finish(received === length ? null : new Error(`${path}: body too long`));
          return !settled;
        },
      },
    });
    socket.on('error', (err) => finish(err));
    socket.on('close', () =>
      finish(new Error(`${path}: connection closed after ${received} of ${length} bytes`)),
    );
    socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nConnection: close\r\n\r\n`);
  });
}

async function run(job: PullJob): Promise<number> {
  const buffer = Buffer.allocUnsafe(1 << 20);
  let total = 0;
  for (let i = 0; i < job.paths.length; i++) {
    const path = job.paths[i] ?? '';
    const got = await get(job.host, job.port, path, buffer);
    if (got !== job.sizes[i]) throw new Error(`${path}: received ${got} of ${job.sizes[i]} bytes`);
    total += got;
  }
  return total;
}

const port = parentPort;
if (port !== null) {
  port.once('message', () => {
    // A failure is an unhandled rejection, which ends the worker with an 'error' event.
    void run(workerData as PullJob).then((total) => port.postMessage(total));
  });
  port.postMessage('ready');
}
