import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { commitQuery, portLines, updateBody } from '../../src/cli/commands/commit.js';
import { diskUsageRows } from '../../src/cli/commands/disk.js';
import { connectBody, networkCreateBody } from '../../src/cli/commands/network.js';
import { volumeCreateBody } from '../../src/cli/commands/volume.js';
import { parseCommandLine } from '../../src/cli/main.js';
import { comparable, dockerAvailable, errorText, FakeApi, type Recorded, type Reply } from './fake-api.js';

/**
 * The new verbs against docker CLI 28: both clients run with the same arguments against the same
 * scripted API, and must send the same requests (bodies compared as parsed JSON, queries with
 * sorted keys) and print the same output. Where docker is not installed, the bodies captured from
 * it (shared/docs/engine-api.md §4) are checked instead.
 */

const needsDocker = { skip: dockerAvailable ? false : 'docker CLI not installed' };

function flagsOf(argv: string[]) {
  const outcome = parseCommandLine(argv);
  if (outcome.kind !== 'run') throw new Error(`not a command: ${argv.join(' ')}`);
  return outcome.invocation;
}

describe('bodies captured from docker CLI 28 (no docker needed)', () => {
  it('network create with subnet, gateway, internal, attachable and an option', () => {
    const { flags, args } = flagsOf([
      'network',
      'create',
      '--driver',
      'bridge',
      '--subnet',
      '10.99.0.0/24',
      '--gateway',
      '10.99.0.1',
      '--internal',
      '--attachable',
      '-o',
      'com.docker.network.bridge.name=br-test',
      'net2',
    ]);
    assert.deepEqual(networkCreateBody(flags, args[0]), {
      Driver: 'bridge',
      Scope: '',
      IPAM: { Driver: 'default', Options: {}, Config: [{ Subnet: '10.99.0.0/24', Gateway: '10.99.0.1' }] },
      Internal: true,
      Attachable: true,
      Ingress: false,
      ConfigOnly: false,
      ConfigFrom: null,
      Options: { 'com.docker.network.bridge.name': 'br-test' },
      Labels: {},
      Name: 'net2',
      CheckDuplicate: true,
    });
  });

  it('network create refuses gateways without a subnet and overlapping subnets', () => {
    const create = (argv: string[]) => {
      const { flags, args } = flagsOf(['network', 'create', ...argv]);
      return () => networkCreateBody(flags, args[0]);
    };
    assert.throws(
      create(['--gateway', '10.0.0.1', 'n']),
      /every ip-range or gateway must have a corresponding subnet/,
    );
    assert.throws(
      create(['--subnet', '10.0.0.0/16', '--subnet', '10.0.1.0/24', 'n']),
      /multiple overlapping subnet configuration is not supported/,
    );
    assert.throws(
      create(['--subnet', '10.0.0.0/16', '--gateway', '10.1.0.1', 'n']),
      /no matching subnet for gateway 10.1.0.1/,
    );
  });

  it('network connect --alias --ip', () => {
    const { flags, args } = flagsOf([
      'network',
      'connect',
      '--alias',
      'foo',
      '--ip',
      '10.99.0.50',
      'net2',
      'st',
    ]);
    assert.deepEqual(connectBody(flags, args[1]), {
      Container: 'st',
      EndpointConfig: {
        IPAMConfig: { IPv4Address: '10.99.0.50' },
        Links: null,
        Aliases: ['foo'],
        MacAddress: '',
        DriverOpts: {},
        GwPriority: 0,
        NetworkID: '',
        EndpointID: '',
        Gateway: '',
        IPAddress: '',
        IPPrefixLen: 0,
        IPv6Gateway: '',
        GlobalIPv6Address: '',
        GlobalIPv6PrefixLen: 0,
        DNSNames: null,
      },
    });
  });

  it('volume create with a label, anonymous', () => {
    const named = flagsOf(['volume', 'create', '--label', 'a=b', 'vol1']);
    assert.deepEqual(volumeCreateBody(named.flags, named.args), {
      Driver: 'local',
      Labels: { a: 'b' },
      Name: 'vol1',
    });
    const anon = flagsOf(['volume', 'create']);
    assert.deepEqual(volumeCreateBody(anon.flags, anon.args), { Driver: 'local' });
  });

  it("commit -m 'msg here' -a me -c 'ENV X=1' st committed:v1", () => {
    const { flags, args } = flagsOf([
      'commit',
      '-m',
      'msg here',
      '-a',
      'me',
      '-c',
      'ENV X=1',
      'st',
      'committed:v1',
    ]);
    assert.deepEqual(commitQuery(flags, args[0], args[1]), {
      author: 'me',
      changes: ['ENV X=1'],
      comment: 'msg here',
      container: 'st',
      pause: undefined,
      repo: 'docker.io/library/committed',
      tag: 'v1',
    });
  });

  it('update sends null for what was not given, and refuses no flags at all', () => {
    const { flags } = flagsOf(['update', '-m', '10m', 'c1']);
    const body = updateBody(flags);
    assert.equal(body.Memory, 10485760);
    assert.equal(body.PidsLimit, null);
    assert.deepEqual(body.RestartPolicy, { Name: '', MaximumRetryCount: 0 });
    assert.equal('KernelMemory' in body, false);
    assert.throws(() => updateBody(flagsOf(['update', 'c1']).flags), /you must provide one or more flags/);
  });

  it('port lines are sorted naturally and IPv6 hosts bracketed', () => {
    const ports = {
      '80/tcp': [
        { HostIp: '0.0.0.0', HostPort: '9090' },
        { HostIp: '::', HostPort: '9090' },
      ],
      '81/udp': [{ HostIp: '127.0.0.1', HostPort: '9091' }],
      '5000/tcp': null,
    };
    assert.deepEqual(portLines(ports, 'st'), [
      '80/tcp -> 0.0.0.0:9090',
      '80/tcp -> [::]:9090',
      '81/udp -> 127.0.0.1:9091',
    ]);
    assert.deepEqual(portLines(ports, 'st', '80/tcp'), ['0.0.0.0:9090', '[::]:9090']);
    assert.throws(() => portLines(ports, 'st', '5000'), /No public port '5000' published for st/);
  });

  it('system df summary as captured from docker', () => {
    const rows = diskUsageRows({
      LayersSize: 1982426,
      Images: [
        { Id: 'a', Containers: 0, Size: 1982426, SharedSize: 1982401 },
        { Id: 'b', Containers: 4, Size: 1982401, SharedSize: 1982401 },
      ],
      Containers: [
        { Id: '1', State: 'exited', SizeRw: 0 },
        { Id: '2', State: 'running', SizeRw: 24 },
        { Id: '3', State: 'running', SizeRw: 0 },
        { Id: '4', State: 'exited', SizeRw: 0 },
      ],
      Volumes: [{ Name: 'x', UsageData: { RefCount: 0, Size: 0 } }],
      BuildCache: null,
      BuilderSize: 0,
    });
    assert.deepEqual(
      rows.map((r) => [r.Type, r.TotalCount, r.Active, r.Size, r.Reclaimable]),
      [
        ['Images', '2', '1', '1.982MB', '1.982MB (100%)'],
        ['Containers', '4', '2', '24B', '0B (0%)'],
        ['Local Volumes', '1', '0', '0B', '0B'],
        ['Build Cache', '0', '0', '0B', '0B'],
      ],
    );
  });
});

describe('strata and docker CLI 28 send the same requests and print the same output', () => {
  const api = new FakeApi();
  let ctxDir: string;

  before(async () => {
    await api.start();
    fs.writeFileSync(path.join(api.dir, 'labels'), 'a=1\n# comment\nb\n');
    fs.writeFileSync(path.join(api.dir, 'seccomp.json'), '{ "defaultAction" : "SCMP_ACT_ALLOW" }\n');
    ctxDir = path.join(api.dir, 'ctx');
    fs.mkdirSync(path.join(ctxDir, 'sub'), { recursive: true });
    fs.mkdirSync(path.join(ctxDir, 'ignored'));
    fs.writeFileSync(path.join(ctxDir, 'Dockerfile'), 'FROM bb\n');
    fs.writeFileSync(path.join(ctxDir, 'a.txt'), 'hi\n');
    fs.writeFileSync(path.join(ctxDir, 'sub', 'b.log'), 'x\n');
    fs.writeFileSync(path.join(ctxDir, 'sub', 'c.log'), 'y\n');
    fs.writeFileSync(path.join(ctxDir, 'ignored', 'z'), 'z\n');
    fs.symlinkSync('a.txt', path.join(ctxDir, 'link'));
    fs.writeFileSync(path.join(ctxDir, '.dockerignore'), 'ignored\n**/*.log\n!sub/b.log\n# comment\n');
  });
  after(() => api.stop());

  /** Runs both clients; asserts identical requests, exit status and output. */
  interface SameOptions {
    input?: string;
    /** docker sends these requests concurrently: compare them as a set. */
    unordered?: boolean;
    /** docker re-encodes the daemon's JSON in its own field order: compare stdout parsed. */
    jsonOutput?: boolean;
  }

  /** Runs both clients; asserts identical requests, exit status and output. */
  async function same(args: string[], reply?: (r: Recorded) => Reply | undefined, opts: SameOptions = {}) {
    api.reply = reply ?? (() => undefined);
    const docker = await api.run('docker', args, opts);
    const strata = await api.run('strata', args, opts);
    const what = `${args.join(' ')}\ndocker: ${docker.stdout}${docker.stderr}\nstrata: ${strata.stdout}${strata.stderr}`;
    const requests = (list: Recorded[]) => {
      const out = list.map(comparable);
      return opts.unordered ? out.sort((a, b) => (a.url < b.url ? -1 : a.url > b.url ? 1 : 0)) : out;
    };
    assert.deepEqual(requests(strata.requests), requests(docker.requests), what);
    assert.equal(strata.code, docker.code, what);
    if (opts.jsonOutput) assert.deepEqual(JSON.parse(strata.stdout), JSON.parse(docker.stdout), what);
    else assert.equal(strata.stdout, docker.stdout, what);
    if (docker.code !== 0) assert.equal(errorText(strata.stderr), errorText(docker.stderr), what);
    return { docker, strata };
  }

  const cases: string[][] = [
    ['network', 'create', 'n0'],
    [
      'network',
      'create',
      '--subnet',
      '10.1.0.0/16',
      '--subnet',
      '10.2.0.0/16,fd00::/64',
      '--gateway',
      '10.1.0.1',
      '--ip-range',
      '10.1.0.0/24',
      '--aux-address',
      'a=10.1.0.5',
      '--internal',
      '--attachable',
      '--label',
      'a=b',
      '-o',
      'k=v',
      '-o',
      'a=1',
      '-d',
      'bridge',
      '--ipv6',
      '--ipam-opt',
      'x=y',
      'net2',
    ],
    ['network', 'create', '--ipv4=false', '--ipam-driver', 'foo', '--scope', 'local', '--config-only', 'n0b'],
    ['network', 'create', '--gateway', '10.1.0.1', 'n1'],
    [
      'network',
      'connect',
      '--alias',
      'a',
      '--alias',
      'b,c',
      '--ip',
      '10.1.0.9',
      '--ip6',
      'fe::1',
      '--link',
      'c:d',
      '--link-local-ip',
      '169.254.1.1',
      '--driver-opt',
      'k=v',
      '--gw-priority',
      '5',
      'net2',
      'st',
    ],
    ['network', 'connect', 'net2', 'st'],
    ['network', 'disconnect', '-f', 'net2', 'st'],
    ['network', 'rm', 'net2', 'net3'],
    ['volume', 'create', '--label', 'a=b', '-o', 'type=tmpfs', '-o', 'device=tmpfs', '-d', 'local', 'vol1'],
    ['volume', 'create'],
    ['volume', 'create', '--name', 'vx'],
    ['volume', 'rm', '-f', 'a', 'b'],
    [
      'update',
      '--memory',
      '64m',
      '--cpus',
      '1.5',
      '--cpu-shares',
      '512',
      '--pids-limit',
      '100',
      '--restart',
      'on-failure:2',
      '--memory-swap',
      '128m',
      '--memory-reservation',
      '32m',
      '--cpuset-cpus',
      '0-1',
      '--cpuset-mems',
      '0',
      '--cpu-period',
      '100000',
      '--cpu-quota',
      '50000',
      '--blkio-weight',
      '300',
      '--kernel-memory',
      '10m',
      'c1',
      'c2',
    ],
    ['update', '--pids-limit', '-1', 'c1'],
    ['update', '--restart', 'always', '--memory-swap', '-1', 'c1'],
    ['update', 'c1'],
    [
      'commit',
      '-a',
      'me',
      '-c',
      'ENV X=1',
      '-c',
      'CMD ["a"]',
      '-m',
      'msg here',
      '--pause=false',
      'st',
      'committed:v1',
    ],
    ['commit', 'st'],
    ['commit', 'st', 'localhost:5000/repo'],
  ];
  for (const args of cases) {
    it(args.join(' '), needsDocker, async () => {
      await same(args);
    });
  }

  const createCases: string[][] = [
    [
      '--mount',
      'type=bind,src=/tmp,dst=/t,readonly',
      '--mount',
      'type=volume,source=v1,target=/v,volume-opt=a=b,volume-label=x=y,volume-nocopy',
      '--mount',
      'type=tmpfs,dst=/tm,tmpfs-size=1m,tmpfs-mode=1777',
      '--mount',
      'type=bind,src=/tmp,dst=/t2,bind-propagation=rshared,consistency=cached',
      '--mount',
      '"type=bind,src=/a,b",dst=/x',
      '--mount',
      'type=bind,source=/a,target=/b,bind-recursive=disabled',
      '--mount',
      'type=volume,target=/b,volume-subpath=x,volume-driver=local',
      '--mount',
      'src=v,dst=/x,ro=true',
      '--mount',
      'type=tmpfs,dst=/x2,tmpfs-mode=700',
      '--mount',
      'type=BIND,src=.,dst=/x3',
    ],
    [
      '--health-cmd',
      'curl x',
      '--health-interval',
      '5s',
      '--health-timeout',
      '1m30s',
      '--health-retries',
      '3',
      '--health-start-period',
      '1m',
    ],
    ['--health-interval', '500ms'],
    ['--no-healthcheck'],
    [
      '--device',
      '/dev/null:/dev/n:r',
      '--device',
      '/dev/zero',
      '--device',
      '/dev/fuse:rw',
      '--group-add',
      'audio',
      '--group-add',
      '1000',
      '--security-opt',
      'no-new-privileges',
      '--security-opt',
      'label=disable',
      '--security-opt',
      'apparmor:unconfined',
      '--security-opt',
      'seccomp=SECCOMP',
      '--volumes-from',
      'c1',
      '--volumes-from',
      'c2:ro',
    ],
    [
      '--network',
      'mynet',
      '--ip',
      '10.1.0.5',
      '--ip6',
      'fe::5',
      '--dns-search',
      'example.com',
      '--dns-option',
      'ndots:2',
    ],
    ['--ip', '10.0.0.2'],
    ['--network', 'none', '--ip', '1.2.3.4'],
    [
      '--cpuset-cpus',
      '0-1',
      '--cpuset-mems',
      '0',
      '--cpu-period',
      '100000',
      '--cpu-quota',
      '50000',
      '--memory-swap',
      '1g',
      '--memory-reservation',
      '10m',
      '--oom-kill-disable',
      '--blkio-weight',
      '300',
      '--device-read-bps',
      '/dev/sda:1mb',
      '--device-write-bps',
      '/dev/sda:2mb',
      '--device-read-iops',
      '/dev/sda:100',
      '--device-write-iops',
      '/dev/sda:200',
      '--blkio-weight-device',
      '/dev/sda:100',
      '--cpu-rt-period',
      '1000',
      '--cpu-rt-runtime',
      '100',
      '--kernel-memory',
      '1m',
    ],
    ['-m', '10m', '--memory-swap', '-1', '--memory-swappiness', '10', '--oom-score-adj', '5'],
    [
      '--userns',
      'host',
      '--uts',
      'host',
      '--pid',
      'host',
      '--ipc',
      'shareable',
      '--cgroupns',
      'private',
      '--cgroup-parent',
      'cg',
      '--sysctl',
      'net.ipv4.ip_forward=1',
      '--storage-opt',
      'size=1G',
      '--log-driver',
      'json-file',
      '--log-opt',
      'max-size=1m',
      '--domainname',
      'dom',
      '--device-cgroup-rule',
      'c 1:3 mr',
    ],
    ['--label-file', 'LABELS', '-l', 'b=2', '-l', 'c=3'],
    // Refused before anything is sent, with docker's messages.
    ['--security-opt', 'bogus'],
    ['--no-healthcheck', '--health-cmd', 'x'],
    ['--health-interval', 'xyz'],
    ['--device-read-bps', '/dev/sda:abc'],
    ['--device', '/dev/a:b:c:d'],
    ['--memory-swap', '1q'],
    ['--mount', 'type=bind,src=/a,dst=/x,bind-recursive=readonly'],
    ['--mount', 'dst=/x,bogus=1'],
    ['--mount', 'dst=/x,type=bind,volume-nocopy'],
    ['--mount', 'src=/a'],
    ['--mount', 'type=bind,src=/a,dst=/x,readonly=yes'],
    ['--mount', 'type=tmpfs,dst=/x,tmpfs-size=abc'],
  ];
  for (const flags of createCases) {
    it(`create ${flags.join(' ')}`, needsDocker, async () => {
      const argv = flags.map((f) =>
        f
          .replace('SECCOMP', path.join(api.dir, 'seccomp.json'))
          .replace('LABELS', path.join(api.dir, 'labels')),
      );
      await same(['create', ...argv, 'bb']);
    });
  }

  it('system prune -a --volumes --filter: the same prune calls and report', needsDocker, async () => {
    const reply = (r: Recorded): Reply | undefined => {
      if (r.url.startsWith('/containers/prune'))
        return { json: { ContainersDeleted: ['c1'], SpaceReclaimed: 10 } };
      if (r.url.startsWith('/networks/prune')) return { json: { NetworksDeleted: ['n1'] } };
      if (r.url.startsWith('/volumes/prune'))
        return { json: { VolumesDeleted: ['v1'], SpaceReclaimed: 1000 } };
      if (r.url.startsWith('/images/prune')) {
        return {
          json: { ImagesDeleted: [{ Untagged: 'x:1' }, { Deleted: 'sha256:abc' }], SpaceReclaimed: 1234 },
        };
      }
      if (r.url.startsWith('/build/prune')) return { json: { CachesDeleted: ['k1'], SpaceReclaimed: 5 } };
      return undefined;
    };
    await same(['system', 'prune', '-f', '-a', '--volumes', '--filter', 'label=a=b'], reply);
    await same(['system', 'prune', '-f'], reply);
    await same(['network', 'prune', '-f', '--filter', 'until=1h'], reply);
    await same(['volume', 'prune', '-f'], reply);
    const declined = await same(['system', 'prune'], reply, { input: 'n\n' });
    assert.match(declined.strata.stdout, /Are you sure you want to continue\? \[y\/N\] $/);
  });

  const networks = [
    { Name: 'host', Id: 'fedcba9876543210fedc', Scope: 'local', Driver: 'host' },
    {
      Name: 'bridge',
      Id: '0123456789abcdef0123',
      Created: '2026-01-01T00:00:00.123456789Z',
      Scope: 'local',
      Driver: 'bridge',
      EnableIPv6: false,
      Internal: false,
      // One label only: docker joins a Go map, in random order.
      Labels: { a: 'b' },
    },
    { Name: 'net10', Id: 'aa', Driver: 'bridge' },
    { Name: 'net9', Id: 'bb', Driver: 'bridge', Internal: true },
  ];
  const volumes = {
    Volumes: [
      {
        Name: 'vol1',
        Driver: 'local',
        Mountpoint: '/x',
        CreatedAt: '2026-11-29T04:19:07Z',
        Labels: { a: 'b' },
        Scope: 'local',
      },
      { Name: 'avol', Driver: 'local', Labels: null, Scope: 'local' },
    ],
    Warnings: null,
  };
  for (const args of [
    ['network', 'ls'],
    ['network', 'ls', '-q'],
    ['network', 'ls', '--no-trunc', '-f', 'driver=bridge'],
    ['network', 'ls', '--format', 'json'],
    [
      'network',
      'ls',
      '--format',
      'table {{.Name}}\\t{{.IPv6}}\\t{{.Internal}}\\t{{.Labels}}\\t{{.CreatedAt}}',
    ],
    ['volume', 'ls'],
    ['volume', 'ls', '-q', '-f', 'dangling=true'],
    ['volume', 'ls', '--format', '{{json .}}'],
    ['volume', 'ls', '--format', 'table {{.Name}}\\t{{.Labels}}\\t{{.Links}}\\t{{.Size}}\\t{{.Mountpoint}}'],
  ]) {
    it(`${args.join(' ')} prints what docker prints`, needsDocker, async () => {
      await same(args, (r) => (r.url.startsWith('/networks') ? { json: networks } : { json: volumes }));
    });
  }

  it('network/volume inspect print the daemon objects and its errors', needsDocker, async () => {
    await same(
      ['volume', 'inspect', 'vol1', 'nosuch'],
      (r) =>
        r.url.includes('nosuch')
          ? { status: 404, json: { message: 'get nosuch: no such volume' } }
          : {
              json: { Name: 'vol1', Driver: 'local', Labels: null, Mountpoint: '', Options: null, Scope: '' },
            },
      { jsonOutput: true },
    );
    await same(['network', 'inspect', '-f', '{{.Name}} {{.Driver}}', 'net'], () => ({
      json: { Name: 'net', Driver: 'bridge' },
    }));
  });

  it('network rm -f ignores missing networks; volume rm reports them', needsDocker, async () => {
    const missing = (r: Recorded): Reply | undefined =>
      r.url.includes('nosuch') ? { status: 404, json: { message: 'network nosuch not found' } } : undefined;
    await same(['network', 'rm', '-f', 'nosuch', 'net'], missing);
    await same(['network', 'rm', 'nosuch'], missing);
    await same(['volume', 'rm', 'nosuch', 'x'], missing);
  });

  it('system df and df -v tables', needsDocker, async () => {
    const df = {
      LayersSize: 3000000,
      Images: [
        {
          Containers: 2,
          Created: 1795925830,
          Id: 'sha256:45dc2737eb3b7eed79cc88907b5016745e5b0eae467ecf92cee29b969d08aaec',
          RepoTags: ['built:v1', 'other:v2'],
          SharedSize: 1000000,
          Size: 1500000,
        },
        {
          Containers: 0,
          Created: 1795925536,
          Id: 'sha256:6caa8d855dc5',
          RepoTags: ['<none>:<none>'],
          SharedSize: -1,
          Size: 1982401,
        },
      ],
      Containers: [
        {
          Id: `4388d08a9093${'a'.repeat(52)}`,
          Names: ['/st'],
          Image: 'bb:latest',
          Command: 'sleep 1000',
          Created: 1795925685,
          SizeRw: 24,
          SizeRootFs: 1982425,
          State: 'running',
          Status: 'Up 3 minutes',
          Mounts: [{ Type: 'volume', Name: 'v1', Driver: 'local' }],
        },
        {
          Id: `252fb4021db8${'b'.repeat(52)}`,
          Names: ['/busy'],
          Image: 'bb',
          Command: "/bin/sh -c 'exit 3'",
          Created: 1795925600,
          SizeRw: 1000,
          State: 'exited',
          Status: 'Exited (3) 2 minutes ago',
        },
      ],
      Volumes: [
        {
          Name: 'v1',
          Driver: 'local',
          Mountpoint: '/x',
          Scope: 'local',
          UsageData: { RefCount: 1, Size: 5000 },
        },
        {
          Name: 'v2',
          Driver: 'local',
          Mountpoint: '/y',
          Scope: 'local',
          UsageData: { RefCount: 0, Size: 7000 },
        },
      ],
      BuildCache: null,
      BuilderSize: 0,
    };
    for (const args of [
      ['system', 'df'],
      ['system', 'df', '-v'],
      ['system', 'df', '--format', '{{json .}}'],
    ]) {
      await same(args, () => ({ json: df }));
    }
  });

  it('port: all mappings, one port, and the errors', needsDocker, async () => {
    const inspect = {
      Id: 'x',
      NetworkSettings: {
        Ports: {
          '80/tcp': [
            { HostIp: '0.0.0.0', HostPort: '9090' },
            { HostIp: '::', HostPort: '9090' },
          ],
          '81/udp': [{ HostIp: '127.0.0.1', HostPort: '9091' }],
          '5000/tcp': null,
          '10/tcp': [{ HostIp: '0.0.0.0', HostPort: '1' }],
        },
      },
    };
    for (const extra of [[], ['80/tcp'], ['80'], ['81/udp'], ['5000'], ['abc']]) {
      await same(['port', 'st', ...extra], () => ({ json: inspect }));
    }
  });

  it('stats --no-stream: the same numbers and columns as docker', needsDocker, async () => {
    const sample = (name: string, id: string) => ({
      read: '2026-11-29T04:19:30.55742019Z',
      preread: '2026-11-29T04:19:29.547401975Z',
      name,
      id,
      pids_stats: { current: 3 },
      blkio_stats: {
        io_service_bytes_recursive: [
          { major: 8, minor: 0, op: 'read', value: 4096 },
          { major: 8, minor: 0, op: 'write', value: 123456 },
        ],
      },
      cpu_stats: {
        cpu_usage: { total_usage: 184114659, percpu_usage: [1, 2] },
        system_cpu_usage: 1351730000000,
        online_cpus: 2,
      },
      precpu_stats: {
        cpu_usage: { total_usage: 84114659 },
        system_cpu_usage: 1349730000000,
        online_cpus: 2,
      },
      memory_stats: {
        usage: 4444160,
        limit: 25275645952,
        stats: { total_inactive_file: 100000, cache: 4096 },
      },
      networks: { eth0: { rx_bytes: 866, tx_bytes: 10 }, eth1: { rx_bytes: 1000, tx_bytes: 0 } },
    });
    const ids = { st: `4388d08a9093${'a'.repeat(52)}`, ex: `bebd25b43426${'b'.repeat(52)}` };
    const reply = (r: Recorded): Reply | undefined => {
      if (r.url.startsWith('/version'))
        return { json: { Os: 'linux', ApiVersion: '1.41', Version: '20.10' } };
      if (r.url.startsWith('/events')) return { lines: [], keepOpen: true };
      if (r.url.startsWith('/containers/json')) {
        return {
          json: [
            { Id: ids.st, Names: ['/st'] },
            { Id: ids.ex, Names: ['/ex'] },
          ],
        };
      }
      const m = /^\/containers\/([^/]+)\/stats/.exec(r.url);
      if (m) {
        const key = m[1].startsWith('bebd') || m[1] === 'ex' ? 'ex' : 'st';
        return { lines: [sample(`/${key}`, ids[key])] };
      }
      return undefined;
    };
    const named = await same(['stats', '--no-stream', 'st'], reply);
    assert.match(named.strata.stdout, /^CONTAINER ID {3}NAME/);
    assert.match(
      named.strata.stdout,
      /4388d08a9093\s+st\s+10\.00%\s+4\.143MiB \/ 23\.54GiB\s+0\.02%\s+1\.87kB \/ 10B\s+4\.1kB \/ 123kB\s+3\n/,
    );
    await same(
      [
        'stats',
        '--no-stream',
        '--no-trunc',
        '--format',
        '{{.Container}} {{.ID}} {{.Name}} {{.PIDs}}',
        'st',
        'ex',
      ],
      reply,
      { unordered: true },
    );
    await same(['stats', '--no-stream', '--format', 'json', 'st'], reply);
    // Without names: every running container, keyed by its short id.
    const allStats = await api.run(
      'strata',
      ['stats', '--no-stream', '--format', '{{.Container}} {{.Name}}'],
      {},
    );
    assert.equal(allStats.code, 0, allStats.stderr);
    assert.deepEqual(allStats.stdout.trim().split('\n').sort(), ['4388d08a9093 st', 'bebd25b43426 ex']);
  });

  it('stats for a missing container fails like docker', needsDocker, async () => {
    await same(['stats', '--no-stream', 'nosuch'], (r) =>
      r.url.startsWith('/version')
        ? { json: { Os: 'linux' } }
        : { status: 404, json: { message: 'No such container: nosuch' } },
    );
  });

  it('build: the same query and the same context tar (.dockerignore applied)', needsDocker, async () => {
    const stream = [
      { stream: 'Step 1/1 : FROM bb\n' },
      { stream: ' ---> 6caa8d855dc5\n' },
      { aux: { ID: 'sha256:45dc2737eb3b7eed79cc88907b5016745e5b0eae467ecf92cee29b969d08aaec' } },
      { stream: 'Successfully built 45dc2737eb3b\n' },
      { stream: 'Successfully tagged a:1\n' },
    ];
    api.reply = (r) => (r.url.startsWith('/build') ? { lines: stream } : undefined);
    const tarList = async (body: Buffer): Promise<string[]> => {
      const { listTar } = await import('./build.test.js');
      return listTar(body);
    };
    for (const args of [
      [
        'build',
        '-t',
        'a:1',
        '-t',
        'b',
        '--build-arg',
        'X=1',
        '--build-arg',
        'Y',
        '--build-arg',
        'Z',
        '--label',
        'l=v',
        '--no-cache',
        '--pull',
        '--target',
        't1',
        '--network',
        'host',
        ctxDir,
      ],
      [
        'build',
        '--rm=false',
        '--force-rm',
        '--add-host',
        'a:1.2.3.4',
        '--shm-size',
        '64m',
        '--ulimit',
        'nofile=10:20',
        '--cache-from',
        'x:1',
        '--platform',
        'linux/amd64',
        '-f',
        path.join(ctxDir, 'Dockerfile'),
        ctxDir,
      ],
    ]) {
      const env = { Y: 'yy' };
      const docker = await api.run('docker', args, { env });
      const strata = await api.run('strata', args, { env });
      assert.equal(docker.code, 0, docker.stderr);
      assert.equal(strata.code, 0, strata.stderr);
      const [d] = docker.requests.filter((r) => r.url.startsWith('/build'));
      const [s] = strata.requests.filter((r) => r.url.startsWith('/build'));
      assert.equal(comparable(s).url, comparable(d).url);
      assert.equal(s.headers['content-type'], 'application/x-tar');
      assert.equal(s.headers['x-registry-config'], d.headers['x-registry-config']);
      assert.deepEqual(await tarList(s.body), await tarList(d.body));
      assert.match(strata.stdout, /^Sending build context to Strata daemon +\d/);
      // Not a terminal: the daemon's text verbatim, as docker prints it.
      assert.equal(
        strata.stdout.split('\n').slice(1).join('\n'),
        docker.stdout.split('\n').slice(1).join('\n'),
      );
    }
  });
});
