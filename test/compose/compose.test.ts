import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { importBusybox, type RunResult, run, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import {
  bridgesOf,
  daemonTag,
  eventually,
  httpGet,
  iptablesLines,
  portsOfBridge,
  sweep,
} from '../network/helpers.js';

/**
 * Debian's docker-compose 1.29 (unchanged) against the daemon: a three-service app — a writer filling
 * a shared volume, a busybox httpd web server reading it (healthcheck, published port, network
 * alias), a client fetching from the web server by service name — comes up, answers, scales to three
 * web replicas, restarts, stops and goes down leaving no container, network, volume, veth, rule or
 * mount behind.
 */
const COMPOSE_FILE = `version: "2.4"
services:
  writer:
    image: bb:latest
    command: ["sh", "-c", "echo \\"hello from $$GREETING\\" > /data/index.html; echo written; exec sleep 1000"]
    env_file: writer.env
    volumes: ["content:/data"]
    networks: [front]
  web:
    image: bb:latest
    command: ["httpd", "-f", "-p", "80", "-h", "/data"]
    volumes: ["content:/data:ro"]
    ports: ["127.0.0.1::80"]
    networks:
      front:
        aliases: [www]
    depends_on: [writer]
    healthcheck:
      test: ["CMD-SHELL", "test -f /data/index.html"]
      interval: 1s
      retries: 3
  client:
    image: bb:latest
    command: ["sh", "-c", "while true; do timeout 3 wget -qO- http://web/ > /tmp/last.tmp && mv /tmp/last.tmp /tmp/last; sleep 1; done"]
    networks: [front]
    depends_on:
      web:
        condition: service_healthy
volumes:
  content:
networks:
  front:
`;

const hasCompose = fs.existsSync('/usr/bin/docker-compose');

describe('docker-compose 1.29', {
  skip: hasCompose ? false : 'docker-compose is not installed (scripts/setup.sh)',
}, () => {
  let d: TestDaemon;
  let dir = '';
  let tag = '';

  before(async () => {
    d = await startDaemon();
    tag = daemonTag(d.root);
    await importBusybox(d);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-compose-'));
    fs.writeFileSync(path.join(dir, 'docker-compose.yml'), COMPOSE_FILE);
    fs.writeFileSync(path.join(dir, 'writer.env'), 'GREETING=compose\n');
    fs.writeFileSync(
      path.join(dir, 'Dockerfile'),
      'FROM bb:latest\nRUN echo built > /built.txt\nCMD ["cat", "/built.txt"]\n',
    );
  });

  after(async () => {
    if (d && dir) await compose(['down', '-v', '-t', '1']).catch(() => undefined);
    await d?.cleanup();
    if (tag) sweep(tag);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  function compose(args: string[], timeoutMs = 120_000): Promise<RunResult> {
    return run('sh', ['-c', `cd '${dir}' && exec docker-compose -p capp "$@"`, 'sh', ...args], {
      timeoutMs,
      env: { ...d.env, COMPOSE_HTTP_TIMEOUT: '120' },
    });
  }
  async function composeOk(args: string[]): Promise<string> {
    const r = await compose(args);
    if (r.code !== 0)
      throw new Error(
        `docker-compose ${args.join(' ')} exited ${r.code}\n${r.stdout}\n${r.stderr}\n${d.log().slice(-3000)}`,
      );
    return r.stdout;
  }

  test('up -d, ps, logs, exec, run: the client fetches from the web server by service name', async () => {
    await composeOk(['up', '-d']);
    const ps = await composeOk(['ps']);
    assert.match(ps, /capp_web_1 .*Up \(healthy\)/);
    assert.match(ps, /capp_writer_1 .*Up/);
    assert.match(ps, /127\.0\.0\.1:\d+->80\/tcp/);
    assert.ok(
      await eventually(
        async () =>
          (await compose(['exec', '-T', 'client', 'cat', '/tmp/last'])).stdout.includes('hello from compose'),
        15_000,
      ),
      'the client got the page from http://web/',
    );
    assert.match(await composeOk(['logs', '--no-color', 'writer']), /written/);
    assert.equal(
      (await composeOk(['exec', '-T', 'web', 'cat', '/data/index.html'])).trim(),
      'hello from compose',
    );
    const oneoff = await composeOk([
      'run',
      '--rm',
      '-T',
      'client',
      'sh',
      '-c',
      'timeout 5 wget -qO- http://www/',
    ]);
    assert.match(oneoff, /hello from compose/);
    const port = (await composeOk(['port', 'web', '80'])).trim().split(':').pop();
    assert.deepEqual(await httpGet(`http://127.0.0.1:${port}/`), {
      status: 200,
      body: 'hello from compose\n',
    });
  });

  test('up --scale web=3: the service name answers with three addresses; restart keeps serving', async () => {
    await composeOk(['up', '-d', '--scale', 'web=3']);
    const lookup = await composeOk(['exec', '-T', 'client', 'nslookup', 'web']);
    const addresses = [...lookup.matchAll(/^Address: (10\.\d+\.\d+\.\d+)$/gm)].map((m) => m[1]);
    assert.equal(new Set(addresses).size, 3, lookup);
    await composeOk(['restart', '-t', '1', 'web']);
    let last: RunResult | null = null;
    const served = await eventually(async () => {
      last = await compose(['exec', '-T', 'client', 'sh', '-c', 'timeout 3 wget -qO- http://web/']);
      return last.stdout.includes('hello');
    }, 20_000);
    assert.ok(served, `after restart: ${JSON.stringify(last)}\n${await composeOk(['ps'])}`);
  });

  test('build (through docker build)', async (t) => {
    const buildFile = path.join(dir, 'build.yml');
    fs.writeFileSync(
      buildFile,
      'version: "2.4"\nservices:\n  tool:\n    build: .\n    image: capp-tool:latest\n',
    );
    const probe = await d.api('POST', '/build?t=probe');
    if (probe.status === 404 && /page not found/.test(probe.body)) {
      t.skip('the daemon has no POST /build yet (build engineer)');
      return;
    }
    const r = await run(
      'sh',
      [
        '-c',
        `cd '${dir}' && docker-compose -p capp -f build.yml build && docker-compose -p capp -f build.yml run --rm -T tool`,
      ],
      {
        timeoutMs: 180_000,
        env: { ...d.env, DOCKER_BUILDKIT: '0' },
      },
    );
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /built/);
    await run('sh', ['-c', `cd '${dir}' && docker-compose -p capp -f build.yml down --rmi all`], {
      env: d.env,
    });
  });

  test('stop and down -v leave no container, network, volume, veth, rule or mount', async () => {
    await composeOk(['stop', '-t', '1']);
    assert.doesNotMatch(await composeOk(['ps']), / Up /);
    await composeOk(['down', '-v', '-t', '1']);
    assert.equal(await d.dockerOk(['ps', '-aq']), '');
    assert.doesNotMatch(await d.dockerOk(['network', 'ls', '--format', '{{.Name}}']), /capp/);
    assert.equal(await d.dockerOk(['volume', 'ls', '-q']), '');
    const bridges = bridgesOf(tag);
    assert.equal(bridges.length, 1, 'only the default bridge is left');
    assert.ok(await eventually(() => portsOfBridge(bridges[0]).length === 0), 'no veth left');
    assert.ok(!iptablesLines(tag).some((l) => l.includes('DNAT --to-destination')), 'no DNAT rule left');
    assert.ok(!iptablesLines(tag).some((l) => /-(i|o) strata-/.test(l)), 'no rule for the removed network');
    const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8');
    assert.ok(!mounts.includes(d.root), 'no mount left under the daemon root');
  });
});
