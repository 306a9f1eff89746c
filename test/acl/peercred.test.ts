import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { peerCredentials } from '../../src/native/index.js';

/** The addon's SO_PEERCRED/SO_PEERGROUPS call, against real unix-socket peers of different users. */
describe('peerCredentials', () => {
  let dir = '';
  let server: net.Server;
  const seen: { uid: number; gid: number; pid: number; groups: number[] }[] = [];
  let socketPath = '';

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-peercred-'));
    fs.chmodSync(dir, 0o755);
    socketPath = path.join(dir, 's.sock');
    server = net.createServer((socket) => {
      const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
      assert.equal(typeof fd, 'number');
      seen.push(peerCredentials(fd as number));
      socket.end('ok');
    });
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    fs.chmodSync(socketPath, 0o777);
  });

  after(() => {
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function connectAs(args: string[]): Promise<number> {
    return new Promise((resolve, reject) => {
      const script = `const s=require('net').connect(${JSON.stringify(socketPath)});s.on('data',()=>s.end());s.on('close',()=>process.exit(0));`;
      const child = spawn(args[0], [...args.slice(1), process.execPath, '-e', script], { stdio: 'ignore' });
      child.on('error', reject);
      child.on('exit', (code) => resolve(code ?? -1));
    });
  }

  test('reports our own uid, gid and pid', async () => {
    seen.length = 0;
    await new Promise<void>((resolve) => {
      const s = net.connect(socketPath);
      s.on('data', () => s.end());
      s.on('close', () => resolve());
    });
    assert.equal(seen.length, 1);
    assert.equal(seen[0].uid, process.getuid?.());
    assert.equal(seen[0].gid, process.getgid?.());
    assert.equal(seen[0].pid, process.pid);
  });

  test('reports another user and its supplementary groups', async () => {
    seen.length = 0;
    const code = await connectAs(['setpriv', '--reuid=65534', '--regid=65534', '--groups=4242,4343']);
    assert.equal(code, 0);
    assert.equal(seen.length, 1);
    assert.equal(seen[0].uid, 65534);
    assert.equal(seen[0].gid, 65534);
    assert.deepEqual([...seen[0].groups].sort(), [4242, 4343]);
  });

  test('a descriptor that is not a socket is an error with errno', () => {
    const fd = fs.openSync('/proc/self/status', 'r');
    try {
      assert.throws(
        () => peerCredentials(fd),
        (err: NodeJS.ErrnoException) => err.code === 'ENOTSOCK' && err.syscall === 'getsockopt',
      );
    } finally {
      fs.closeSync(fd);
    }
  });
});
