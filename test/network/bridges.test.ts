import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { importBusybox, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { daemonTag, linkExists, sweep } from './helpers.js';

/**
 * Bridges on a host shared by several daemons. A clean stop removes a daemon's bridges, so the
 * names (`strataN`, first free) and pool subnets it held can be taken by another daemon before it
 * comes back; and a bridge can vanish under a running daemon. Both used to end in
 * `create veth …: EINVAL` (a veth whose master index no longer exists) or in two daemons sharing —
 * and then deleting — one bridge.
 */
describe('bridges shared with other daemons', () => {
  let d: TestDaemon;
  let tag = '';
  const foreign: string[] = [];
  const FOREIGN_ALIAS = 'strata:f0f0f0:0123456789abcdef';

  before(async () => {
    d = await startDaemon();
    tag = daemonTag(d.root);
    await importBusybox(d);
  });

  after(async () => {
    await d?.cleanup();
    for (const name of foreign) if (linkExists(name)) execFileSync('ip', ['link', 'del', name]);
    if (tag) sweep(tag);
  });

  const inspectNetwork = async (name: string) => {
    const n = JSON.parse(await d.dockerOk(['network', 'inspect', name]))[0];
    const bridge: string = n.Options['com.docker.network.bridge.name'] ?? `strata-${n.Id.slice(0, 8)}`;
    return { bridge, subnet: n.IPAM.Config[0].Subnet as string, gateway: n.IPAM.Config[0].Gateway as string };
  };

  const stopCleanly = async () => {
    d.process.kill('SIGTERM');
    await new Promise((r) => d.process.once('exit', r));
  };

  /** What another daemon starting now would make: the bridge, its address, its own alias. */
  const foreignBridge = (name: string, gateway: string, subnet: string) => {
    execFileSync('ip', ['link', 'add', name, 'type', 'bridge']);
    foreign.push(name);
    execFileSync('ip', ['addr', 'add', `${gateway}/${subnet.split('/')[1]}`, 'dev', name]);
    execFileSync('ip', ['link', 'set', name, 'alias', FOREIGN_ALIAS, 'up']);
  };
  const addressesOn = (name: string) =>
    execFileSync('ip', ['-o', '-4', 'addr', 'show', 'dev', name], { encoding: 'utf8' }).trim().split('\n');

  test('a bridge deleted under a running daemon is made again at the next start (no stale index)', async () => {
    await d.dockerOk(['run', '--rm', 'bb', 'true']);
    const { bridge } = await inspectNetwork('bridge');
    execFileSync('ip', ['link', 'del', bridge]);
    const r = await d.docker(['run', '--rm', 'bb', 'true'], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(linkExists(bridge));
  });

  test('bridges another daemon took while we were stopped are not taken over, nor deleted', async () => {
    // A subnet from the end of the pool: test daemons running beside this one take the first free
    // /24s, and one could take a pool subnet while this daemon is stopped.
    await d.dockerOk(['network', 'create', '--subnet', '10.99.251.0/24', 'usernet']);
    const def = await inspectNetwork('bridge');
    const user = await inspectNetwork('usernet');
    await stopCleanly();
    assert.ok(!linkExists(def.bridge) && !linkExists(user.bridge), 'a clean stop removes our bridges');
    foreignBridge(def.bridge, def.gateway, def.subnet);
    foreignBridge(user.bridge, user.gateway, user.subnet);
    await d.restart();

    const moved = await inspectNetwork('bridge');
    assert.notEqual(moved.bridge, def.bridge, 'the default network has a bridge of its own');
    assert.notEqual(moved.subnet, def.subnet);
    const ip = await d.dockerOk(['run', '--rm', 'bb', 'ip', '-o', '-4', 'addr', 'show', 'eth0']);
    assert.ok(ip.includes(moved.subnet.split('.').slice(0, 2).join('.')), ip);
    const refused = await d.docker(['run', '--rm', '--network', 'usernet', 'bb', 'true']);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /usernet is unavailable: bridge .* belongs to strata:f0f0f0/);
    for (const name of [def.bridge, user.bridge]) {
      assert.equal(fs.readFileSync(`/sys/class/net/${name}/ifalias`, 'utf8').trim(), FOREIGN_ALIAS);
      assert.equal(addressesOn(name).length, 1, `only the other daemon's address on ${name}`);
    }

    await stopCleanly();
    assert.ok(
      linkExists(def.bridge) && linkExists(user.bridge),
      "the other daemon's bridges survive our stop",
    );
    assert.ok(!linkExists(moved.bridge), 'our own bridge is removed');
    for (const name of foreign.splice(0)) execFileSync('ip', ['link', 'del', name]);
    await d.restart();
    await d.dockerOk(['run', '--rm', '--network', 'usernet', 'bb', 'true']);
    await d.dockerOk(['network', 'rm', 'usernet']);
  });
});
