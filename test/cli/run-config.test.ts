import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { CliError } from '../../src/cli/errors.js';
import { parseCommandLine } from '../../src/cli/main.js';
import {
  buildCreateRequest,
  parseCpus,
  parseEnvFile,
  parseMemoryBytes,
  parsePublish,
} from '../../src/cli/run-config.js';

function createRequestFor(argv: string[], env: NodeJS.ProcessEnv = {}) {
  const outcome = parseCommandLine(argv);
  if (outcome.kind !== 'run') throw new Error(`not a command: ${argv.join(' ')}`);
  const { flags, args } = outcome.invocation;
  const [image, ...command] = args;
  return buildCreateRequest(flags, image, command, {
    env,
    detach: flags.has('detach') && flags.bool('detach'),
  });
}

// Bodies captured from docker CLI 28.2.2 (`docker run …` against a logging socket).
const ZERO_HOST_CONFIG = {
  Binds: null,
  ContainerIDFile: '',
  LogConfig: { Type: '', Config: {} },
  NetworkMode: 'default',
  PortBindings: {},
  RestartPolicy: { Name: 'no', MaximumRetryCount: 0 },
  AutoRemove: false,
  VolumeDriver: '',
  VolumesFrom: null,
  ConsoleSize: [0, 0],
  CapAdd: null,
  CapDrop: null,
  CgroupnsMode: '',
  Dns: [],
  DnsOptions: [],
  DnsSearch: [],
  ExtraHosts: null,
  GroupAdd: null,
  IpcMode: '',
  Cgroup: '',
  Links: null,
  OomScoreAdj: 0,
  PidMode: '',
  Privileged: false,
  PublishAllPorts: false,
  ReadonlyRootfs: false,
  SecurityOpt: null,
  UTSMode: '',
  UsernsMode: '',
  ShmSize: 0,
  Isolation: '',
  CpuShares: 0,
  Memory: 0,
  NanoCpus: 0,
  CgroupParent: '',
  BlkioWeight: 0,
  BlkioWeightDevice: [],
  BlkioDeviceReadBps: [],
  BlkioDeviceWriteBps: [],
  BlkioDeviceReadIOps: [],
  BlkioDeviceWriteIOps: [],
  CpuPeriod: 0,
  CpuQuota: 0,
  CpuRealtimePeriod: 0,
  CpuRealtimeRuntime: 0,
  CpusetCpus: '',
  CpusetMems: '',
  Devices: [],
  DeviceCgroupRules: null,
  DeviceRequests: null,
  MemoryReservation: 0,
  MemorySwap: 0,
  MemorySwappiness: -1,
  OomKillDisable: false,
  PidsLimit: 0,
  Ulimits: [],
  CpuCount: 0,
  CpuPercent: 0,
  IOMaximumIOps: 0,
  IOMaximumBandwidth: 0,
  MaskedPaths: null,
  ReadonlyPaths: null,
};

const ENDPOINT = {
  IPAMConfig: null,
  Links: null,
  Aliases: null,
  MacAddress: '',
  DriverOpts: null,
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
};

describe('create body', () => {
  it('equals docker CLI 28 for `run --rm bb:latest echo hi`', () => {
    const { name, body } = createRequestFor(['run', '--rm', 'bb:latest', 'echo', 'hi']);
    assert.equal(name, undefined);
    assert.deepStrictEqual(JSON.parse(JSON.stringify(body)), {
      Hostname: '',
      Domainname: '',
      User: '',
      AttachStdin: false,
      AttachStdout: true,
      AttachStderr: true,
      Tty: false,
      OpenStdin: false,
      StdinOnce: false,
      Env: null,
      Cmd: ['echo', 'hi'],
      Image: 'bb:latest',
      Volumes: {},
      WorkingDir: '',
      Entrypoint: null,
      OnBuild: null,
      Labels: {},
      HostConfig: { ...ZERO_HOST_CONFIG, AutoRemove: true },
      NetworkingConfig: { EndpointsConfig: { default: ENDPOINT } },
    });
  });

  it('equals docker CLI 28 for a detached run with ports, env, volumes and limits', () => {
    const { name, body } = createRequestFor([
      'run',
      '-d',
      '--name',
      'web1',
      '-p',
      '8080:80',
      '-e',
      'B=1',
      '-e',
      'A=2',
      '-v',
      '/tmp:/t',
      '--memory',
      '64m',
      '--cpus',
      '0.5',
      '-l',
      'k=v',
      '-w',
      '/w',
      '-u',
      '1:1',
      '--entrypoint',
      '/bin/sh',
      '--hostname',
      'hh',
      '--network',
      'none',
      'bb:latest',
      '-c',
      'x',
    ]);
    assert.equal(name, 'web1');
    assert.deepStrictEqual(JSON.parse(JSON.stringify(body)), {
      Hostname: 'hh',
      Domainname: '',
      User: '1:1',
      AttachStdin: false,
      AttachStdout: false,
      AttachStderr: false,
      ExposedPorts: { '80/tcp': {} },
      Tty: false,
      OpenStdin: false,
      StdinOnce: false,
      Env: ['B=1', 'A=2'],
      Cmd: ['-c', 'x'],
      Image: 'bb:latest',
      Volumes: {},
      WorkingDir: '/w',
      Entrypoint: ['/bin/sh'],
      OnBuild: null,
      Labels: { k: 'v' },
      HostConfig: {
        ...ZERO_HOST_CONFIG,
        Binds: ['/tmp:/t'],
        NetworkMode: 'none',
        PortBindings: { '80/tcp': [{ HostIp: '', HostPort: '8080' }] },
        Memory: 67108864,
        NanoCpus: 500000000,
      },
      NetworkingConfig: { EndpointsConfig: {} },
    });
  });

  it('equals docker CLI 28 for -i with networks, ranges, env files and host options', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-envfile-'));
    const envFile = path.join(dir, 'env');
    fs.writeFileSync(envFile, 'X=1\n#c\nY\n');
    try {
      const { body } = createRequestFor(
        [
          'run',
          '-i',
          '--network',
          'mynet',
          '--network-alias',
          'svc',
          '--restart',
          'on-failure:3',
          '-p',
          '127.0.0.1::53/udp',
          '-p',
          '8080-8081:80-81',
          '--expose',
          '5000',
          '-v',
          '/data',
          '-v',
          'myvol:/v:ro',
          '--env-file',
          envFile,
          '-e',
          'Z',
          '-l',
          'a',
          '-l',
          'b=c',
          '--cap-add',
          'net_admin',
          '--add-host',
          'foo:1.2.3.4',
          '--dns',
          '8.8.8.8',
          '--tmpfs',
          '/tt',
          '--init',
          '--shm-size',
          '1g',
          '--ulimit',
          'nofile=10:20',
          '--stop-signal',
          'SIGINT',
          '--stop-timeout',
          '5',
          '--privileged',
          '--read-only',
          '-P',
          'bb',
          'cat',
        ],
        { Y: 'fromenv' },
      );
      assert.deepStrictEqual(JSON.parse(JSON.stringify(body)), {
        Hostname: '',
        Domainname: '',
        User: '',
        AttachStdin: true,
        AttachStdout: true,
        AttachStderr: true,
        ExposedPorts: { '5000/tcp': {}, '53/udp': {}, '80/tcp': {}, '81/tcp': {} },
        Tty: false,
        OpenStdin: true,
        StdinOnce: true,
        Env: ['X=1', 'Y=fromenv', 'Z'],
        Cmd: ['cat'],
        Image: 'bb',
        Volumes: { '/data': {} },
        WorkingDir: '',
        Entrypoint: null,
        OnBuild: null,
        Labels: { a: '', b: 'c' },
        StopSignal: 'SIGINT',
        StopTimeout: 5,
        HostConfig: {
          ...ZERO_HOST_CONFIG,
          Binds: ['myvol:/v:ro'],
          NetworkMode: 'mynet',
          PortBindings: {
            '53/udp': [{ HostIp: '127.0.0.1', HostPort: '' }],
            '80/tcp': [{ HostIp: '', HostPort: '8080' }],
            '81/tcp': [{ HostIp: '', HostPort: '8081' }],
          },
          RestartPolicy: { Name: 'on-failure', MaximumRetryCount: 3 },
          CapAdd: ['CAP_NET_ADMIN'],
          Dns: ['8.8.8.8'],
          ExtraHosts: ['foo:1.2.3.4'],
          Privileged: true,
          PublishAllPorts: true,
          ReadonlyRootfs: true,
          Tmpfs: { '/tt': '' },
          ShmSize: 1073741824,
          Ulimits: [{ Name: 'nofile', Hard: 20, Soft: 10 }],
          Init: true,
        },
        NetworkingConfig: { EndpointsConfig: { mynet: { ...ENDPOINT, Aliases: ['svc'] } } },
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('sets the TTY fields and console size for -it', () => {
    const outcome = parseCommandLine(['run', '-it', '--rm', 'bb', 'sh']);
    if (outcome.kind !== 'run') throw new Error('unreachable');
    const { body } = buildCreateRequest(outcome.invocation.flags, 'bb', ['sh'], { consoleSize: [30, 100] });
    assert.deepEqual(
      [body.AttachStdin, body.AttachStdout, body.AttachStderr, body.Tty, body.OpenStdin, body.StdinOnce],
      [true, true, true, true, true, true],
    );
    assert.deepEqual(body.HostConfig.ConsoleSize, [30, 100]);
  });

  it('rejects bad values with exit status 125', () => {
    const expect125 = (argv: string[], pattern: RegExp): void =>
      assert.throws(
        () => createRequestFor(argv),
        (err: unknown) => err instanceof CliError && err.exitCode === 125 && pattern.test(err.message),
      );
    expect125(
      ['run', '-m', '1q', 'bb'],
      /invalid argument "1q" for "-m, --memory" flag: invalid suffix: 'q'/,
    );
    expect125(['run', '--cpus', 'abc', 'bb'], /failed to parse abc as a rational number/);
    expect125(['run', '-p', '99999:1', 'bb'], /invalid hostPort: 99999/);
    expect125(['run', '--rm', '--restart', 'always', 'bb'], /conflicting options/);
    expect125(['run', '-v', 'a:b', 'bb'], /invalid volume specification/);
  });
});

describe('option values', () => {
  it('parses memory sizes, cpus, publish specs and env files', () => {
    assert.equal(parseMemoryBytes('64m'), 64 * 1024 * 1024);
    assert.equal(parseMemoryBytes('1G'), 1024 ** 3);
    assert.equal(parseMemoryBytes('512kb'), 512 * 1024);
    assert.equal(parseMemoryBytes('100'), 100);
    assert.equal(parseCpus('1.5'), 1_500_000_000);
    assert.deepEqual(parsePublish('80'), {
      exposed: ['80/tcp'],
      bindings: [['80/tcp', { HostIp: '', HostPort: '' }]],
    });
    assert.deepEqual(parsePublish('[::1]:8080:80/udp').bindings, [
      ['80/udp', { HostIp: '::1', HostPort: '8080' }],
    ]);
    assert.deepEqual(parseEnvFile('A=1\n\n# x\n  B=two words\nC\n', { C: 'c' }), [
      'A=1',
      'B=two words',
      'C=c',
    ]);
  });
});
