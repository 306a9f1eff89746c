import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { encodeFrame } from '../../src/cli/stream.js';
import { run, STRATA_BIN } from '../helpers/daemon.js';
import { describeResult } from './helpers.js';

/**
 * `strata run` must follow the docker CLI's request order — create, attach (hijacked), wait
 * (whose headers arrive before anything else is sent), start — because the daemon registers the
 * waiter and the attach before the container can exit. A scripted API records the order.
 */
describe('strata run request sequence', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-cli-seq-'));
  const socket = path.join(dir, 'api.sock');
  const ID = 'a'.repeat(64);
  let events: string[] = [];
  let attachSocket: net.Socket | undefined;
  let stdinReceived = '';
  let stdinEnded = false;
  let waitResponse: http.ServerResponse | undefined;
  let server: http.Server;

  // The container "runs" once both start and (when attached) the hijack happened: it prints,
  // closes the stream, then the wait answers.
  const finishContainer = (): void => {
    const output = stdinReceived ? `echo:${stdinReceived}` : 'hi\n';
    if (attachSocket) {
      attachSocket.write(encodeFrame(1, output));
      attachSocket.write(encodeFrame(2, 'warn\n'));
      attachSocket.end();
    }
    setTimeout(() => waitResponse?.end('{"Error":null,"StatusCode":3}\n'), 20);
  };

  before(async () => {
    server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const url = req.url ?? '';
        res.setHeader('Api-Version', '1.41');
        if (url === '/_ping') return res.end();
        events.push(`${req.method} ${url.replace(ID, 'ID')}`);
        if (url.startsWith('/v1.41/containers/create')) {
          res.writeHead(201, { 'Content-Type': 'application/json' });
          return res.end(`{"Id":"${ID}","Warnings":[]}`);
        }
        if (url.includes('/wait?')) {
          // Headers now, body at exit: the CLI must not wait for the body before starting.
          res.writeHead(200, { 'Content-Type': 'application/json' });
          res.flushHeaders();
          waitResponse = res;
          res.on('close', () => events.push('wait closed by client'));
          return;
        }
        if (url.endsWith('/start')) {
          res.writeHead(204);
          res.end();
          setTimeout(finishContainer, 100);
          return;
        }
        res.writeHead(404, { 'Content-Type': 'application/json' });
        res.end('{"message":"page not found"}');
      });
    });
    server.on('upgrade', (req: http.IncomingMessage, sock: net.Socket) => {
      events.push(`UPGRADE ${req.method} ${(req.url ?? '').replace(ID, 'ID')} ${req.headers.upgrade}`);
      attachSocket = sock;
      sock.write(
        'HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n',
      );
      sock.on('data', (c: Buffer) => {
        stdinReceived += c.toString();
      });
      sock.on('end', () => {
        stdinEnded = true;
        events.push('attach half-closed by client');
      });
    });
    await new Promise<void>((r) => server.listen(socket, r));
  });

  beforeEach(() => {
    events = [];
    attachSocket = undefined;
    stdinReceived = '';
    stdinEnded = false;
    waitResponse = undefined;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const strata = (args: string[], input?: string) =>
    run(process.execPath, [STRATA_BIN, ...args], {
      env: { STRATA_HOST: `unix://${socket}` },
      input,
      timeoutMs: 15_000,
    });

  it('foreground: create → attach (hijack, half-closed) → wait(removed) → start, exit with the wait status', async () => {
    const r = await strata(['run', '--rm', 'bb', 'echo', 'hi']);
    assert.equal(r.code, 3, describeResult(r));
    assert.equal(r.stdout, 'hi\n');
    assert.equal(r.stderr, 'warn\n');
    // The half-close races with the wait request on another connection; only its presence matters.
    assert.deepEqual(events.filter((e) => !e.startsWith('attach half-closed')).slice(0, 4), [
      'POST /v1.41/containers/create',
      'UPGRADE POST /v1.41/containers/ID/attach?stderr=1&stdout=1&stream=1 tcp',
      'POST /v1.41/containers/ID/wait?condition=removed',
      'POST /v1.41/containers/ID/start',
    ]);
    assert.equal(stdinEnded, true, 'no stdin: the attach connection is half-closed');
    assert.equal(stdinReceived, '');
  });

  it('-i: stdin goes over the attach connection, then a half-close', async () => {
    const r = await strata(['run', '-i', 'bb', 'cat'], 'piped\n');
    assert.equal(r.code, 3, describeResult(r));
    assert.equal(r.stdout, 'echo:piped\n');
    assert.equal(
      events[1],
      'UPGRADE POST /v1.41/containers/ID/attach?stderr=1&stdin=1&stdout=1&stream=1 tcp',
    );
    assert.ok(events.includes('POST /v1.41/containers/ID/wait?condition=next-exit'));
    assert.equal(stdinReceived, 'piped\n');
    assert.equal(stdinEnded, true);
  });

  it('-d: create → wait → start, prints the id and abandons the wait', async () => {
    const r = await strata(['run', '-d', '--name', 'bg', 'bb', 'sleep', '1']);
    assert.equal(r.code, 0, describeResult(r));
    assert.equal(r.stdout, `${ID}\n`);
    await new Promise((res) => setTimeout(res, 200));
    assert.deepEqual(events.slice(0, 3), [
      'POST /v1.41/containers/create?name=bg',
      'POST /v1.41/containers/ID/wait?condition=next-exit',
      'POST /v1.41/containers/ID/start',
    ]);
    assert.ok(events.includes('wait closed by client'));
    assert.ok(!events.some((e) => e.startsWith('UPGRADE')), 'nothing is attached');
  });
});
