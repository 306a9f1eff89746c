import assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { aRecord, buildResponse, parseQuery, RCODE_NOERROR } from '../../src/network/dns-codec.js';
import { importBusybox, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import {
  addressesOf,
  bridgesOf,
  daemonTag,
  dnsQuery,
  eventually,
  httpGet,
  iptablesLines,
  linkExists,
  portsOfBridge,
  sweep,
  tcpAsk,
} from './helpers.js';

/**
 * Networks end to end with the docker CLI and busybox: names, isolation, --internal, published
 * ports, connect/disconnect, DNS forwarding (to a fake resolver on loopback), crash recovery, and
 * nothing left on the host afterwards. Traffic goes only to loopback and to the test networks.
 */
describe('networks', () => {
  let d: TestDaemon;
  let tag = '';
  let upstream: dgram.Socket;
  let upstreamQueries = 0;

  before(async () => {
    // A fake "host resolver": answers every A query with 10.123.45.67 (never contacted).
    upstream = dgram.createSocket('udp4');
    upstream.on('message', (msg, rinfo) => {
      upstreamQueries++;
      const q = parseQuery(msg);
      const name = q.questions[0]?.name ?? '';
      const answers = q.questions[0]?.type === 1 ? [aRecord(name, '10.123.45.67')] : [];
      upstream.send(buildResponse(q, RCODE_NOERROR, answers), rinfo.port, rinfo.address);
    });
    await new Promise<void>((r) => upstream.bind(0, '127.0.0.1', () => r()));
    const port = upstream.address().port;
    d = await startDaemon({ extraArgs: ['--dns-upstream', `127.0.0.1:${port}`] });
    tag = daemonTag(d.root);
    await importBusybox(d);
  });

  after(async () => {
    await d?.cleanup();
    upstream?.close();
    if (tag) sweep(tag);
  });

  const sh = (args: string[]) => d.docker(args, { timeoutMs: 30_000 });

  test('the default bridge network has a gateway; predefined networks are listed', async () => {
    const ls = await d.dockerOk(['network', 'ls', '--format', '{{.Name}} {{.Driver}}']);
    assert.deepEqual(ls.split('\n').sort(), ['bridge bridge', 'host host', 'none null']);
    const bridge = JSON.parse(await d.dockerOk(['network', 'inspect', 'bridge']))[0];
    assert.match(bridge.IPAM.Config[0].Gateway, /^10\.\d+\.0\.1$/);
    assert.equal(bridgesOf(tag).length, 1);
    const rm = await d.docker(['network', 'rm', 'bridge']);
    assert.notEqual(rm.code, 0);
    assert.match(rm.stderr, /pre-defined network/);
  });

  test('containers on one network reach each other by name and alias; replicas give several A records', async () => {
    await d.dockerOk(['network', 'create', '--label', 'purpose=test', '-o', 'com.example.x=1', 'appnet']);
    const inspect = JSON.parse(await d.dockerOk(['network', 'inspect', 'appnet']))[0];
    assert.deepEqual(inspect.Options, { 'com.example.x': '1' });
    assert.deepEqual(inspect.Labels, { purpose: 'test' });
    for (const name of ['web1', 'web2']) {
      await d.dockerOk([
        'run',
        '-d',
        '--name',
        name,
        '--network',
        'appnet',
        '--network-alias',
        'web',
        'bb',
        'sh',
        '-c',
        `echo ${name} > /tmp/index.html; exec httpd -f -p 80 -h /tmp`,
      ]);
    }
    const out = await sh([
      'run',
      '--rm',
      '--network',
      'appnet',
      'bb',
      'sh',
      '-c',
      'cat /etc/resolv.conf; timeout 5 wget -qO- http://web1/; nslookup web; nslookup web2',
    ]);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /^web1$/m, 'fetched by container name');
    const ips = JSON.parse(await d.dockerOk(['network', 'inspect', 'appnet']))[0].Containers as Record<
      string,
      { Name: string; IPv4Address: string }
    >;
    const addresses = Object.values(ips).map((c) => c.IPv4Address.split('/')[0]);
    assert.equal(addresses.length, 2);
    for (const ip of addresses) assert.ok(out.stdout.includes(ip), `alias "web" answers ${ip}`);
    const host = JSON.parse(await d.dockerOk(['inspect', 'web1']))[0];
    assert.deepEqual(
      host.NetworkSettings.Networks.appnet.Aliases.sort(),
      [host.Id.slice(0, 12), 'web'].sort(),
    );
    assert.match(host.NetworkSettings.Networks.appnet.MacAddress, /^02:42:/);
    const onNet = await d.dockerOk(['ps', '--filter', 'network=appnet', '--format', '{{.Names}}']);
    assert.deepEqual(onNet.split('\n').sort(), ['web1', 'web2']);
  });

  test('a running client keeps reaching the DNS server and its peers after they restart', async () => {
    await d.dockerOk(['network', 'create', 'restartnet']);
    await d.dockerOk(['run', '-d', '--name', 'rclient', '--network', 'restartnet', 'bb', 'sleep', '300']);
    await d.dockerOk(['run', '-d', '--name', 'rweb', '--network', 'restartnet', 'bb', 'sleep', '300']);
    const fetch = () => sh(['exec', 'rclient', 'sh', '-c', 'timeout 3 ping -c1 -W1 rweb']);
    assert.equal((await fetch()).code, 0, 'before the restart');
    // The client's ARP cache now holds the bridge's MAC; a bridge that takes the lowest MAC of its
    // ports would change it when the peer's veth goes and comes back.
    await d.dockerOk(['restart', '-t', '0', 'rweb']);
    const after = await fetch();
    assert.equal(after.code, 0, `after the restart: ${after.stdout}${after.stderr}`);
    const id: string = JSON.parse(await d.dockerOk(['network', 'inspect', 'restartnet']))[0].Id;
    const assignType = fs.readFileSync(`/sys/class/net/strata-${id.slice(0, 8)}/addr_assign_type`, 'utf8');
    assert.equal(assignType.trim(), '3', 'the bridge has an address of its own');
    await d.dockerOk(['rm', '-f', 'rclient', 'rweb']);
    await d.dockerOk(['network', 'rm', 'restartnet']);
  });
  test('outside names are forwarded to the host resolver; other networks stay invisible and unreachable', async () => {
    await d.dockerOk(['network', 'create', 'othernet']);
    const web1 = JSON.parse(await d.dockerOk(['inspect', 'web1']))[0].NetworkSettings.Networks.appnet
      .IPAddress;
    const before = upstreamQueries;
    const out = await sh([
      'run',
      '--rm',
      '--network',
      'othernet',
      'bb',
      'sh',
      '-c',
      `nslookup outside.example; nslookup web1 | grep -q '${web1}' && echo LEAK; if timeout 3 wget -qO- http://${web1}/; then echo REACHED; else echo ISOLATED; fi`,
    ]);
    assert.match(out.stdout, /10\.123\.45\.67/, 'the upstream answered');
    assert.ok(upstreamQueries > before);
    assert.doesNotMatch(out.stdout, /LEAK/, 'names of appnet do not resolve on othernet');
    assert.match(out.stdout, /ISOLATED/);
    assert.doesNotMatch(out.stdout, /REACHED/);
  });

  test('an --internal network has no route out', async () => {
    await d.dockerOk(['network', 'create', '--internal', 'closed']);
    await d.dockerOk([
      'run',
      '-d',
      '--name',
      'pubweb',
      '-p',
      '80',
      'bb',
      'httpd',
      '-f',
      '-p',
      '80',
      '-h',
      '/etc',
    ]);
    const port = (await d.dockerOk(['port', 'pubweb', '80'])).split(':').pop() ?? '';
    const gw = JSON.parse(await d.dockerOk(['network', 'inspect', 'closed']))[0].IPAM.Config[0].Gateway;
    const bridgeGw = JSON.parse(await d.dockerOk(['network', 'inspect', 'bridge']))[0].IPAM.Config[0].Gateway;
    const pubIp = JSON.parse(await d.dockerOk(['inspect', 'pubweb']))[0].NetworkSettings.IPAddress;
    const inside = await sh([
      'run',
      '--rm',
      '--network',
      'closed',
      'bb',
      'sh',
      '-c',
      `ip route; if timeout 3 wget -qO- http://${pubIp}/hostname; then echo OUT; else echo BLOCKED; fi; nslookup outside.example || echo NOFORWARD`,
    ]);
    assert.doesNotMatch(inside.stdout, /default/, 'no default route');
    assert.match(
      inside.stdout,
      new RegExp(`${gw.replace(/\.1$/, '.0').replace(/\./g, '\\.')}/\\d+ dev eth0`),
    );
    assert.match(inside.stdout, /BLOCKED/);
    assert.match(inside.stdout, /NOFORWARD/);
    // the same target is reachable from a normal network through the published port (control)
    const outside = await sh([
      'run',
      '--rm',
      'bb',
      'sh',
      '-c',
      `timeout 5 wget -qO- http://${bridgeGw}:${port}/hostname`,
    ]);
    assert.equal(outside.code, 0, outside.stderr);
  });

  test('published ports answer on 127.0.0.1; docker port and NetworkSettings.Ports', async () => {
    await d.dockerOk([
      'run',
      '-d',
      '--name',
      'ports',
      '-p',
      '80',
      '-p',
      '127.0.0.1::8080',
      '--expose',
      '9000',
      '-p',
      '5353:53/udp',
      'bb',
      'sh',
      '-c',
      'echo hi > /tmp/index.html; exec httpd -f -p 80 -h /tmp',
    ]);
    const ports = JSON.parse(await d.dockerOk(['inspect', '-f', '{{json .NetworkSettings.Ports}}', 'ports']));
    assert.equal(ports['9000/tcp'], null);
    assert.equal(ports['80/tcp'][0].HostIp, '0.0.0.0');
    assert.equal(typeof ports['80/tcp'][0].HostPort, 'string');
    assert.equal(ports['8080/tcp'][0].HostIp, '127.0.0.1');
    assert.deepEqual(ports['53/udp'], [{ HostIp: '0.0.0.0', HostPort: '5353' }]);
    const port = ports['80/tcp'][0].HostPort;
    assert.match(await d.dockerOk(['port', 'ports', '80']), new RegExp(`0\\.0\\.0\\.0:${port}`));
    const res = await httpGet(`http://127.0.0.1:${port}/`);
    assert.deepEqual(res, { status: 200, body: 'hi\n' });
    const bridgeGw = JSON.parse(await d.dockerOk(['network', 'inspect', 'bridge']))[0].IPAM.Config[0].Gateway;
    assert.deepEqual(
      await httpGet(`http://${bridgeGw}:${port}/`),
      { status: 200, body: 'hi\n' },
      'on a host address too',
    );
    const ps = await d.dockerOk(['ps', '--filter', 'name=ports', '--format', '{{.Ports}}']);
    assert.match(ps, new RegExp(`0\\.0\\.0\\.0:${port}->80/tcp`));
    assert.match(ps, /9000\/tcp/);
    // the port is held: a second container cannot take it
    const clash = await d.docker(['run', '-d', '--name', 'clash', '-p', `${port}:80`, 'bb', 'sleep', '5']);
    assert.notEqual(clash.code, 0);
    assert.match(clash.stderr, /already allocated/);
    await d.docker(['rm', '-f', 'clash']);
    assert.ok(iptablesLines(tag).some((l) => l.includes(`--dport ${port} `)));
    await d.dockerOk(['rm', '-f', 'ports']);
    assert.ok(
      !iptablesLines(tag).some((l) => l.includes(`--dport ${port} `)),
      'DNAT rule removed with the container',
    );
    assert.ok('error' in (await httpGet(`http://127.0.0.1:${port}/`, 1000)));
  });

  test('connect/disconnect on created and running containers; rm refuses while in use', async () => {
    await d.dockerOk([
      'create',
      '--name',
      'late',
      'bb',
      'sh',
      '-c',
      'echo late > /tmp/index.html; exec httpd -f -p 80 -h /tmp',
    ]);
    await d.dockerOk(['network', 'connect', '--alias', 'latecomer', 'appnet', 'late']);
    const created = JSON.parse(await d.dockerOk(['inspect', 'late']))[0];
    assert.deepEqual(Object.keys(created.NetworkSettings.Networks).sort(), ['appnet', 'bridge']);
    assert.equal(created.NetworkSettings.Networks.appnet.IPAddress, '');
    await d.dockerOk(['start', 'late']);
    let got = '';
    const reached = await eventually(async () => {
      const r = await sh([
        'run',
        '--rm',
        '--network',
        'appnet',
        'bb',
        'timeout',
        '5',
        'wget',
        '-qO-',
        'http://latecomer/',
      ]);
      got = r.stdout;
      return got.trim() === 'late';
    }, 20_000);
    assert.ok(reached, `fetched ${JSON.stringify(got)}`);
    const rm = await d.docker(['network', 'rm', 'appnet']);
    assert.notEqual(rm.code, 0);
    assert.match(rm.stderr, /active endpoints/);
    await d.dockerOk(['network', 'disconnect', 'appnet', 'late']);
    const links = await d.dockerOk(['exec', 'late', 'ip', '-o', 'link']);
    assert.doesNotMatch(links, /eth1/, 'the interface is gone');
    await d.dockerOk(['rm', '-f', 'late']);
    // --subnet/--gateway/--ip-range and a static --ip
    await d.dockerOk([
      'network',
      'create',
      '--subnet',
      '10.251.77.0/24',
      '--gateway',
      '10.251.77.254',
      '--ip-range',
      '10.251.77.128/25',
      'ipnet',
    ]);
    const ipam = JSON.parse(await d.dockerOk(['network', 'inspect', 'ipnet']))[0].IPAM.Config[0];
    assert.deepEqual(ipam, {
      Subnet: '10.251.77.0/24',
      IPRange: '10.251.77.128/25',
      Gateway: '10.251.77.254',
    });
    const fixed = await sh([
      'run',
      '--rm',
      '--network',
      'ipnet',
      '--ip',
      '10.251.77.9',
      'bb',
      'ip',
      '-o',
      '-4',
      'addr',
      'show',
      'eth0',
    ]);
    assert.match(fixed.stdout, /10\.251\.77\.9\/24/);
    const ranged = await sh([
      'run',
      '--rm',
      '--network',
      'ipnet',
      'bb',
      'sh',
      '-c',
      'ip -o -4 addr show eth0; ip route',
    ]);
    assert.match(ranged.stdout, /10\.251\.77\.1(2[89]|[3-9]\d)\/24/, 'allocated from the ip-range');
    assert.match(ranged.stdout, /default via 10\.251\.77\.254/);
    await d.dockerOk(['network', 'rm', 'ipnet']);
  });

  test('connect/disconnect of a running container edit its /etc/hosts; the network DNS server answers over TCP', async () => {
    await d.dockerOk(['network', 'create', 'hostsa']);
    await d.dockerOk(['network', 'create', 'hostsb']);
    await d.dockerOk([
      'run',
      '-d',
      '--name',
      'hc',
      '--network',
      'hostsa',
      '--hostname',
      'hc-host',
      '--domainname',
      'example.test',
      'bb',
      'sleep',
      '300',
    ]);
    const hostsOf = async (name: string) =>
      (await d.dockerOk(['exec', name, 'cat', '/etc/hosts'])).split('\n');
    const ipOn = async (name: string, network: string): Promise<string> =>
      JSON.parse(await d.dockerOk(['inspect', name]))[0].NetworkSettings.Networks[network].IPAddress;
    const ipA = await ipOn('hc', 'hostsa');
    assert.ok((await hostsOf('hc')).includes(`${ipA}\thc-host.example.test hc-host`));
    await d.dockerOk(['network', 'connect', '--alias', 'hcalias', 'hostsb', 'hc']);
    const ipB = await ipOn('hc', 'hostsb');
    const connected = await hostsOf('hc');
    assert.ok(connected.includes(`${ipB}\thc-host.example.test hc-host`), connected.join('\n'));
    assert.ok(connected.includes(`${ipA}\thc-host.example.test hc-host`));
    // the alias answers on hostsb, over UDP from a container and over TCP from the host
    const peer = await sh(['run', '--rm', '--network', 'hostsb', 'bb', 'nslookup', 'hcalias']);
    assert.ok(peer.stdout.includes(ipB), peer.stdout + peer.stderr);
    const gateway = JSON.parse(await d.dockerOk(['network', 'inspect', 'hostsb']))[0].IPAM.Config[0].Gateway;
    const [tcp] = await tcpAsk(gateway, 53, [dnsQuery(77, 'hcalias')]);
    assert.deepEqual(addressesOf(tcp), [ipB]);
    await d.dockerOk(['network', 'disconnect', 'hostsb', 'hc']);
    const disconnected = await hostsOf('hc');
    assert.ok(!disconnected.some((l) => l.startsWith(`${ipB}\t`)), disconnected.join('\n'));
    assert.ok(disconnected.includes(`${ipA}\thc-host.example.test hc-host`));
    // a created container connected to a second network gets a line for each at start
    await d.dockerOk(['create', '--name', 'hc2', '--network', 'hostsa', 'bb', 'sleep', '300']);
    await d.dockerOk(['network', 'connect', 'hostsb', 'hc2']);
    await d.dockerOk(['start', 'hc2']);
    const short = JSON.parse(await d.dockerOk(['inspect', 'hc2']))[0].Id.slice(0, 12);
    const both = await hostsOf('hc2');
    assert.ok(both.includes(`${await ipOn('hc2', 'hostsa')}\t${short}`), both.join('\n'));
    assert.ok(both.includes(`${await ipOn('hc2', 'hostsb')}\t${short}`), both.join('\n'));
    await d.dockerOk(['rm', '-f', 'hc', 'hc2']);
    await d.dockerOk(['network', 'rm', 'hostsa', 'hostsb']);
  });

  test('IPv6 is refused with 400 and a message, not ignored', async () => {
    const created = await d.api('POST', '/networks/create', { Name: 'v6net', EnableIPv6: true });
    assert.equal(created.status, 400);
    assert.match(created.body, /IPv6 is not supported \(--ipv6\)/);
    const subnet = await d.docker(['network', 'create', '--subnet', 'fd00::/64', 'v6net']);
    assert.notEqual(subnet.code, 0);
    assert.match(subnet.stderr, /IPv6 subnets are not supported: fd00::\/64/);
    assert.doesNotMatch(await d.dockerOk(['network', 'ls', '--format', '{{.Name}}']), /v6net/);
    await d.dockerOk(['network', 'create', 'v4only']);
    const run = await d.docker(['run', '--rm', '--network', 'v4only', '--ip6', 'fd00::5', 'bb', 'true']);
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /IPv6 addresses are not supported \(--ip6 fd00::5\)/);
    await d.dockerOk(['network', 'rm', 'v4only']);
  });

  test('a crash leaves nothing behind once the daemon is back; a clean stop removes bridges and rules', async () => {
    await d.dockerOk([
      'run',
      '-d',
      '--name',
      'victim',
      '--network',
      'othernet',
      '-p',
      '127.0.0.1::80',
      'bb',
      'httpd',
      '-f',
      '-p',
      '80',
    ]);
    const victim = JSON.parse(await d.dockerOk(['inspect', 'victim']))[0];
    const port = victim.NetworkSettings.Ports['80/tcp'][0].HostPort;
    const bridge = JSON.parse(await d.dockerOk(['network', 'inspect', 'othernet']))[0].Id.slice(0, 8);
    const veths = portsOfBridge(`strata-${bridge}`);
    assert.equal(veths.length, 1);
    await d.kill();
    process.kill(victim.State.Pid, 'SIGKILL');
    assert.ok(await eventually(() => !linkExists(veths[0])), 'the veth goes with the namespace');
    await d.restart();
    assert.ok(
      await eventually(() => !iptablesLines(tag).some((l) => l.includes(`--dport ${port} `))),
      'the dead container’s DNAT rule is gone after the restart',
    );
    assert.equal(JSON.parse(await d.dockerOk(['inspect', 'victim']))[0].State.Status, 'exited');
    const ids = (await d.dockerOk(['ps', '-aq'])).split('\n').filter(Boolean);
    if (ids.length > 0) await d.dockerOk(['rm', '-f', ...ids]);
    const pruned = await d.dockerOk(['network', 'prune', '-f']);
    assert.match(pruned, /appnet/);
    assert.deepEqual((await d.dockerOk(['network', 'ls', '--format', '{{.Name}}'])).split('\n').sort(), [
      'bridge',
      'host',
      'none',
    ]);
    assert.equal(bridgesOf(tag).length, 1);
    d.process.kill('SIGTERM');
    await new Promise((r) => d.process.once('exit', r));
    assert.deepEqual(iptablesLines(tag), [], 'no rule left after a clean stop');
    assert.deepEqual(bridgesOf(tag), [], 'no bridge left after a clean stop');
    await d.restart();
  });
});
