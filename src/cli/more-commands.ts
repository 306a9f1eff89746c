import type { CommandSpec } from './commands.js';
import type { FlagSpec } from './flags.js';

/**
 * The command table's second half: commit, port, stats, update, build, and the `network`,
 * `volume` and `system df|prune` groups. Like commands.ts it holds only flags and usage; each
 * handler file is imported when its command runs, so `strata ps` never loads the build code.
 */

const FORMAT: FlagSpec = { name: 'format', kind: 'string', help: 'Format output using a custom template' };
const INSPECT_FORMAT: FlagSpec = {
  name: 'format',
  short: 'f',
  kind: 'string',
  help: 'Format output using a custom template',
};
const FORCE_PRUNE: FlagSpec = {
  name: 'force',
  short: 'f',
  kind: 'bool',
  help: 'Do not prompt for confirmation',
};
const PRUNE_FILTER: FlagSpec = {
  name: 'filter',
  kind: 'list',
  help: 'Provide filter values (e.g. "until=<timestamp>")',
};
const LIST_FILTER: FlagSpec = {
  name: 'filter',
  short: 'f',
  kind: 'list',
  help: 'Provide filter values (e.g. "driver=bridge")',
};

/** `update` and the matching `run`/`create` resource flags share their help texts. */
export const UPDATE_FLAGS: FlagSpec[] = [
  {
    name: 'blkio-weight',
    kind: 'int',
    help: 'Block IO (relative weight), between 10 and 1000, or 0 to disable',
  },
  { name: 'cpu-period', kind: 'int', help: 'Limit CPU CFS (Completely Fair Scheduler) period' },
  { name: 'cpu-quota', kind: 'int', help: 'Limit CPU CFS (Completely Fair Scheduler) quota' },
  { name: 'cpu-rt-period', kind: 'int', help: 'Limit the CPU real-time period in microseconds' },
  { name: 'cpu-rt-runtime', kind: 'int', help: 'Limit the CPU real-time runtime in microseconds' },
  { name: 'cpu-shares', short: 'c', kind: 'int', help: 'CPU shares (relative weight)' },
  { name: 'cpus', kind: 'string', valueName: 'decimal', help: 'Number of CPUs' },
  { name: 'cpuset-cpus', kind: 'string', help: 'CPUs in which to allow execution (0-3, 0,1)' },
  { name: 'cpuset-mems', kind: 'string', help: 'MEMs in which to allow execution (0-3, 0,1)' },
  { name: 'memory', short: 'm', kind: 'string', valueName: 'bytes', help: 'Memory limit' },
  { name: 'memory-reservation', kind: 'string', valueName: 'bytes', help: 'Memory soft limit' },
  {
    name: 'memory-swap',
    kind: 'string',
    valueName: 'bytes',
    help: 'Swap limit equal to memory plus swap: -1 to enable unlimited swap',
  },
  { name: 'kernel-memory', kind: 'string', valueName: 'bytes', help: 'Kernel memory limit', hidden: true },
  { name: 'pids-limit', kind: 'int', help: 'Tune container pids limit (set -1 for unlimited)' },
  { name: 'restart', kind: 'string', help: 'Restart policy to apply when a container exits' },
];

const commit = () => import('./commands/commit.js');
const stats = () => import('./commands/stats.js');
const build = () => import('./commands/build.js');
const network = () => import('./commands/network.js');
const volume = () => import('./commands/volume.js');
const disk = () => import('./commands/disk.js');

export const MORE_COMMANDS: CommandSpec[] = [
  {
    name: 'commit',
    usage: 'commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]',
    summary: "Create a new image from a container's changes",
    flags: [
      {
        name: 'author',
        short: 'a',
        kind: 'string',
        help: 'Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")',
      },
      { name: 'change', short: 'c', kind: 'list', help: 'Apply Dockerfile instruction to the created image' },
      { name: 'message', short: 'm', kind: 'string', help: 'Commit message' },
      { name: 'pause', short: 'p', kind: 'bool', help: 'Pause container during commit', defaultValue: true },
    ],
    minArgs: 1,
    maxArgs: 2,
    load: async () => (await commit()).commitCommand,
  },
  {
    name: 'port',
    usage: 'port CONTAINER [PRIVATE_PORT[/PROTO]]',
    summary: 'List port mappings or a specific mapping for the container',
    flags: [],
    minArgs: 1,
    maxArgs: 2,
    load: async () => (await commit()).portCommand,
  },
  {
    name: 'update',
    usage: 'update [OPTIONS] CONTAINER [CONTAINER...]',
    summary: 'Update configuration of one or more containers',
    flags: UPDATE_FLAGS,
    minArgs: 1,
    load: async () => (await commit()).updateCommand,
  },
  {
    name: 'stats',
    usage: 'stats [OPTIONS] [CONTAINER...]',
    summary: 'Display a live stream of container(s) resource usage statistics',
    flags: [
      { name: 'all', short: 'a', kind: 'bool', help: 'Show all containers (default shows just running)' },
      FORMAT,
      { name: 'no-stream', kind: 'bool', help: 'Disable streaming stats and only pull the first result' },
      { name: 'no-trunc', kind: 'bool', help: 'Do not truncate output' },
    ],
    load: async () => (await stats()).statsCommand,
  },
  {
    name: 'build',
    usage: 'build [OPTIONS] PATH | -',
    summary: 'Build an image from a Dockerfile',
    flags: [
      { name: 'add-host', kind: 'list', help: 'Add a custom host-to-IP mapping ("host:ip")' },
      { name: 'build-arg', kind: 'list', help: 'Set build-time variables' },
      { name: 'cache-from', kind: 'list', help: 'Images to consider as cache sources' },
      {
        name: 'file',
        short: 'f',
        kind: 'string',
        help: 'Name of the Dockerfile (Default is "PATH/Dockerfile")',
      },
      { name: 'force-rm', kind: 'bool', help: 'Always remove intermediate containers' },
      { name: 'iidfile', kind: 'string', help: 'Write the image ID to the file' },
      { name: 'label', kind: 'list', help: 'Set metadata for an image' },
      {
        name: 'network',
        kind: 'string',
        help: 'Set the networking mode for the RUN instructions during build',
        defaultValue: 'default',
      },
      { name: 'no-cache', kind: 'bool', help: 'Do not use cache when building the image' },
      { name: 'platform', kind: 'string', help: 'Set platform if server is multi-platform capable' },
      {
        name: 'progress',
        kind: 'string',
        help: 'Set type of progress output ("auto", "plain", "tty")',
        defaultValue: 'auto',
      },
      { name: 'pull', kind: 'bool', help: 'Always attempt to pull a newer version of the image' },
      {
        name: 'quiet',
        short: 'q',
        kind: 'bool',
        help: 'Suppress the build output and print image ID on success',
      },
      {
        name: 'rm',
        kind: 'bool',
        help: 'Remove intermediate containers after a successful build',
        defaultValue: true,
      },
      { name: 'shm-size', kind: 'string', valueName: 'bytes', help: 'Size of "/dev/shm"' },
      { name: 'tag', short: 't', kind: 'list', help: 'Name and optionally a tag in the "name:tag" format' },
      { name: 'target', kind: 'string', help: 'Set the target build stage to build.' },
      { name: 'ulimit', kind: 'list', help: 'Ulimit options' },
    ],
    minArgs: 1,
    maxArgs: 1,
    load: async () => (await build()).buildCommand,
  },
  {
    name: 'network create',
    usage: 'network create [OPTIONS] NETWORK',
    summary: 'Create a network',
    flags: [
      { name: 'attachable', kind: 'bool', help: 'Enable manual container attachment' },
      {
        name: 'aux-address',
        kind: 'list',
        valueName: 'map',
        help: 'Auxiliary IPv4 or IPv6 addresses used by Network driver',
      },
      { name: 'config-from', kind: 'string', help: 'The network from which to copy the configuration' },
      { name: 'config-only', kind: 'bool', help: 'Create a configuration only network' },
      {
        name: 'driver',
        short: 'd',
        kind: 'string',
        help: 'Driver to manage the Network',
        defaultValue: 'bridge',
      },
      {
        name: 'gateway',
        kind: 'list',
        valueName: 'strings',
        help: 'IPv4 or IPv6 Gateway for the master subnet',
      },
      { name: 'ingress', kind: 'bool', help: 'Create swarm routing-mesh network' },
      { name: 'internal', kind: 'bool', help: 'Restrict external access to the network' },
      {
        name: 'ip-range',
        kind: 'list',
        valueName: 'strings',
        help: 'Allocate container ip from a sub-range',
      },
      { name: 'ipam-driver', kind: 'string', help: 'IP Address Management Driver', defaultValue: 'default' },
      { name: 'ipam-opt', kind: 'list', valueName: 'map', help: 'Set IPAM driver specific options' },
      { name: 'ipv4', kind: 'bool', help: 'Enable or disable IPv4 address assignment', defaultValue: true },
      { name: 'ipv6', kind: 'bool', help: 'Enable or disable IPv6 address assignment' },
      { name: 'label', kind: 'list', help: 'Set metadata on a network' },
      { name: 'opt', short: 'o', kind: 'list', valueName: 'map', help: 'Set driver specific options' },
      { name: 'scope', kind: 'string', help: "Control the network's scope" },
      {
        name: 'subnet',
        kind: 'list',
        valueName: 'strings',
        help: 'Subnet in CIDR format that represents a network segment',
      },
    ],
    minArgs: 1,
    maxArgs: 1,
    load: async () => (await network()).networkCreateCommand,
  },
  {
    name: 'network ls',
    usage: 'network ls [OPTIONS]',
    summary: 'List networks',
    flags: [
      LIST_FILTER,
      FORMAT,
      { name: 'no-trunc', kind: 'bool', help: 'Do not truncate the output' },
      { name: 'quiet', short: 'q', kind: 'bool', help: 'Only display network IDs' },
    ],
    maxArgs: 0,
    load: async () => (await network()).networkLsCommand,
  },
  {
    name: 'network inspect',
    usage: 'network inspect [OPTIONS] NETWORK [NETWORK...]',
    summary: 'Display detailed information on one or more networks',
    flags: [
      INSPECT_FORMAT,
      { name: 'verbose', short: 'v', kind: 'bool', help: 'Verbose output for diagnostics' },
    ],
    minArgs: 1,
    load: async () => (await network()).networkInspectCommand,
  },
  {
    name: 'network rm',
    usage: 'network rm NETWORK [NETWORK...]',
    summary: 'Remove one or more networks',
    flags: [{ name: 'force', short: 'f', kind: 'bool', help: 'Do not error if the network does not exist' }],
    minArgs: 1,
    load: async () => (await network()).networkRmCommand,
  },
  {
    name: 'network connect',
    usage: 'network connect [OPTIONS] NETWORK CONTAINER',
    summary: 'Connect a container to a network',
    flags: [
      {
        name: 'alias',
        kind: 'list',
        valueName: 'strings',
        help: 'Add network-scoped alias for the container',
      },
      { name: 'driver-opt', kind: 'list', valueName: 'strings', help: 'driver options for the network' },
      {
        name: 'gw-priority',
        kind: 'int',
        help: 'Highest gw-priority provides the default gateway. Accepts positive and negative values.',
      },
      { name: 'ip', kind: 'string', help: 'IPv4 address (e.g., "172.30.100.104")' },
      { name: 'ip6', kind: 'string', help: 'IPv6 address (e.g., "2001:db8::33")' },
      { name: 'link', kind: 'list', help: 'Add link to another container' },
      {
        name: 'link-local-ip',
        kind: 'list',
        valueName: 'strings',
        help: 'Add a link-local address for the container',
      },
    ],
    minArgs: 2,
    maxArgs: 2,
    load: async () => (await network()).networkConnectCommand,
  },
  {
    name: 'network disconnect',
    usage: 'network disconnect [OPTIONS] NETWORK CONTAINER',
    summary: 'Disconnect a container from a network',
    flags: [
      { name: 'force', short: 'f', kind: 'bool', help: 'Force the container to disconnect from a network' },
    ],
    minArgs: 2,
    maxArgs: 2,
    load: async () => (await network()).networkDisconnectCommand,
  },
  {
    name: 'network prune',
    usage: 'network prune [OPTIONS]',
    summary: 'Remove all unused networks',
    flags: [PRUNE_FILTER, FORCE_PRUNE],
    maxArgs: 0,
    load: async () => (await network()).networkPruneCommand,
  },
  {
    name: 'volume create',
    usage: 'volume create [OPTIONS] [VOLUME]',
    summary: 'Create a volume',
    flags: [
      {
        name: 'driver',
        short: 'd',
        kind: 'string',
        help: 'Specify volume driver name',
        defaultValue: 'local',
      },
      { name: 'label', kind: 'list', help: 'Set metadata for a volume' },
      { name: 'name', kind: 'string', help: 'Specify volume name', hidden: true },
      { name: 'opt', short: 'o', kind: 'list', valueName: 'map', help: 'Set driver specific options' },
    ],
    maxArgs: 1,
    load: async () => (await volume()).volumeCreateCommand,
  },
  {
    name: 'volume ls',
    usage: 'volume ls [OPTIONS]',
    summary: 'List volumes',
    flags: [
      { ...LIST_FILTER, help: 'Provide filter values (e.g. "dangling=true")' },
      FORMAT,
      { name: 'quiet', short: 'q', kind: 'bool', help: 'Only display volume names' },
    ],
    maxArgs: 0,
    load: async () => (await volume()).volumeLsCommand,
  },
  {
    name: 'volume inspect',
    usage: 'volume inspect [OPTIONS] VOLUME [VOLUME...]',
    summary: 'Display detailed information on one or more volumes',
    flags: [INSPECT_FORMAT],
    minArgs: 1,
    load: async () => (await volume()).volumeInspectCommand,
  },
  {
    name: 'volume rm',
    usage: 'volume rm [OPTIONS] VOLUME [VOLUME...]',
    summary: 'Remove one or more volumes',
    flags: [{ name: 'force', short: 'f', kind: 'bool', help: 'Force the removal of one or more volumes' }],
    minArgs: 1,
    load: async () => (await volume()).volumeRmCommand,
  },
  {
    name: 'volume prune',
    usage: 'volume prune [OPTIONS]',
    summary: 'Remove unused local volumes',
    flags: [
      { name: 'all', short: 'a', kind: 'bool', help: 'Remove all unused volumes, not just anonymous ones' },
      { ...PRUNE_FILTER, help: 'Provide filter values (e.g. "label=<label>")' },
      FORCE_PRUNE,
    ],
    maxArgs: 0,
    load: async () => (await volume()).volumePruneCommand,
  },
  {
    name: 'system df',
    usage: 'system df [OPTIONS]',
    summary: 'Show Strata disk usage',
    flags: [
      FORMAT,
      { name: 'verbose', short: 'v', kind: 'bool', help: 'Show detailed information on space usage' },
    ],
    maxArgs: 0,
    load: async () => (await disk()).dfCommand,
  },
  {
    name: 'system prune',
    usage: 'system prune [OPTIONS]',
    summary: 'Remove unused data',
    flags: [
      { name: 'all', short: 'a', kind: 'bool', help: 'Remove all unused images not just dangling ones' },
      { ...PRUNE_FILTER, help: 'Provide filter values (e.g. "label=<key>=<value>")' },
      FORCE_PRUNE,
      { name: 'volumes', kind: 'bool', help: 'Prune anonymous volumes' },
    ],
    maxArgs: 0,
    load: async () => (await disk()).systemPruneCommand,
  },
];

/** Group verbs of the commands above (merged into commands.ts' GROUPS). */
export const MORE_GROUPS: Record<string, Record<string, string>> = {
  container: { commit: 'commit', port: 'port', stats: 'stats', update: 'update' },
  image: { build: 'build' },
  builder: { build: 'build' },
  network: {
    create: 'network create',
    ls: 'network ls',
    list: 'network ls',
    inspect: 'network inspect',
    rm: 'network rm',
    remove: 'network rm',
    connect: 'network connect',
    disconnect: 'network disconnect',
    prune: 'network prune',
  },
  volume: {
    create: 'volume create',
    ls: 'volume ls',
    list: 'volume ls',
    inspect: 'volume inspect',
    rm: 'volume rm',
    remove: 'volume rm',
    prune: 'volume prune',
  },
  system: { df: 'system df', prune: 'system prune' },
};
