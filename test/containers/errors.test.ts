import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { importBusybox, startDaemon, type TestDaemon } from '../helpers/daemon.js';

describe("bad input gets Docker's errors and changes nothing", () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon();
    await importBusybox(d);
  });
  after(async () => {
    await d?.cleanup();
  });

  test("unknown container and image → 404 with Docker's message", async () => {
    const r = await d.api('GET', '/v1.41/containers/nosuch/json');
    assert.equal(r.status, 404);
    assert.equal(r.headers['content-type'], 'application/json');
    assert.equal(JSON.parse(r.body).message, 'No such container: nosuch');
    const c = await d.api('POST', '/v1.41/containers/create', { Image: 'nosuchimage:1', Cmd: ['true'] });
    assert.equal(c.status, 404);
    assert.match(JSON.parse(c.body).message, /No such image: nosuchimage:1/);
    const cli = await d.docker(['logs', 'nosuch']);
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /No such container: nosuch/);
  });

  test('bad reference and bad values → 400', async () => {
    const r = await d.api('POST', '/v1.41/containers/create', { Image: 'UPPER:case', Cmd: ['true'] });
    assert.equal(r.status, 400);
    const name = await d.api('POST', '/v1.41/containers/create?name=bad%20name', {
      Image: 'bb',
      Cmd: ['true'],
    });
    assert.equal(name.status, 400);
    assert.match(JSON.parse(name.body).message, /Invalid container name/);
    const noCmd = await d.api('POST', '/v1.41/containers/create', { Image: 'bb', Entrypoint: [''], Cmd: [] });
    assert.equal(noCmd.status, 400);
    const kill = await d.api('POST', '/v1.41/containers/create?name=k1', {
      Image: 'bb',
      Cmd: ['sleep', '100'],
    });
    assert.equal(kill.status, 201);
    await d.dockerOk(['start', 'k1']);
    const badSignal = await d.api('POST', '/v1.41/containers/k1/kill?signal=SIGNOPE');
    assert.equal(badSignal.status, 400);
    await d.dockerOk(['rm', '-f', 'k1']);
  });

  test('conflicts → 409', async () => {
    await d.dockerOk(['create', '--name', 'dup', 'bb', 'true']);
    const dup = await d.docker(['create', '--name', 'dup', 'bb', 'true']);
    assert.notEqual(dup.code, 0);
    assert.match(dup.stderr, /is already in use by container/);
    const status = await d.api('POST', '/v1.41/containers/create?name=dup', { Image: 'bb', Cmd: ['true'] });
    assert.equal(status.status, 409);
    const killStopped = await d.api('POST', '/v1.41/containers/dup/kill');
    assert.equal(killStopped.status, 409);
    await d.dockerOk(['start', 'dup']);
    await d.dockerOk(['rm', 'dup']);
  });

  test('start of a running container and stop of a stopped one → 304', async () => {
    await d.dockerOk(['run', '-d', '--name', 'nm', 'bb', 'sleep', '100']);
    assert.equal((await d.api('POST', '/v1.41/containers/nm/start')).status, 304);
    await d.dockerOk(['stop', '-t', '0', 'nm']);
    assert.equal((await d.api('POST', '/v1.41/containers/nm/stop')).status, 304);
    await d.dockerOk(['rm', 'nm']);
  });

  test('malformed JSON → 400, unknown route → 404 JSON, versions checked', async () => {
    const bad = await d.api('POST', '/v1.41/containers/create', '{"Image": ');
    assert.equal(bad.status, 400);
    assert.ok(JSON.parse(bad.body).message);
    const unknown = await d.api('GET', '/v1.41/nosuchroute');
    assert.equal(unknown.status, 404);
    assert.equal(JSON.parse(unknown.body).message, 'page not found');
    const tooNew = await d.api('GET', '/v9.99/version');
    assert.equal(tooNew.status, 400);
    assert.match(JSON.parse(tooNew.body).message, /too new/);
    const old = await d.api('GET', '/v1.12/version');
    assert.equal(old.status, 200);
    const unversioned = await d.api('GET', '/version');
    assert.equal(JSON.parse(unversioned.body).ApiVersion, '1.41');
    const ping = await d.api('HEAD', '/_ping');
    assert.equal(ping.headers['api-version'], '1.41');
  });

  test('a failed start leaves no mount, cgroup or runtime state behind', async () => {
    const r = await d.docker(['run', '--name', 'fails', 'bb', '/nonexistent']);
    assert.equal(r.code, 127);
    const id = await d.dockerOk(['inspect', '-f', '{{.Id}}', 'fails']);
    const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8');
    assert.ok(!mounts.includes(id), 'rootfs still mounted');
    assert.ok(!fs.existsSync(`/sys/fs/cgroup/memory/strata/${id}`), 'cgroup left behind');
    assert.ok(!fs.existsSync(`${d.root}/runtime/crun/${id}`), 'runtime state left behind');
    await d.dockerOk(['rm', 'fails']);
    assert.ok(!fs.existsSync(`${d.root}/containers/${id}`));
  });

  test('two daemons run side by side', async () => {
    const other = await startDaemon();
    try {
      await importBusybox(other);
      await other.dockerOk(['run', '-d', '--name', 'only-here', 'bb', 'sleep', '100']);
      const mine = await d.dockerOk(['ps', '-a', '--format', '{{.Names}}']);
      assert.ok(!mine.includes('only-here'));
      assert.equal(await other.dockerOk(['ps', '--format', '{{.Names}}']), 'only-here');
    } finally {
      await other.cleanup();
    }
  });
});
