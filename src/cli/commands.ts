import type { EngineClient } from './client.js';
import type { FlagSpec, FlagValues } from './flags.js';
import { MORE_COMMANDS, MORE_GROUPS } from './more-commands.js';
import { CONTAINER_FLAGS, RUN_ONLY_FLAGS } from './run-config.js';

/**
 * The command table: every verb's usage, flags and argument count, and a lazy loader for its
 * handler, so `strata ps` only loads the code for `ps`. Group forms (`container ls`,
 * `image rm`, `system info`) map onto the same entries.
 */

export interface CommandContext {
  /** Canonical name, e.g. `run`, `image inspect`. */
  name: string;
  flags: FlagValues;
  args: string[];
  /** The daemon connection, opened (and the daemon started if needed) on first use. */
  client(): Promise<EngineClient>;
}

/** Returns the exit status (undefined = 0). */
export type CommandHandler = (ctx: CommandContext) => Promise<number | undefined>;

export interface CommandSpec {
  name: string;
  usage: string;
  summary: string;
  flags: FlagSpec[];
  minArgs?: number;
  maxArgs?: number;
  /** false: flags end at the first positional argument (the rest is the container command). */
  interspersed?: boolean;
  load: () => Promise<CommandHandler>;
}

const FILTER: FlagSpec = {
  name: 'filter',
  short: 'f',
  kind: 'list',
  help: 'Filter output based on conditions provided',
};
const FORMAT: FlagSpec = { name: 'format', kind: 'string', help: 'Format output using a custom template' };
const QUIET_IDS: FlagSpec = { name: 'quiet', short: 'q', kind: 'bool', help: 'Only display IDs' };
const NO_TRUNC: FlagSpec = { name: 'no-trunc', kind: 'bool', help: "Don't truncate output" };
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
const STOP_TIMEOUT: FlagSpec[] = [
  { name: 'timeout', short: 't', kind: 'int', help: 'Seconds to wait before killing the container' },
  { name: 'time', kind: 'int', help: 'Seconds to wait before killing the container', hidden: true },
  { name: 'signal', short: 's', kind: 'string', help: 'Signal to send to the container' },
];

const containers = () => import('./commands/containers.js');
const running = () => import('./commands/run.js');
const images = () => import('./commands/images.js');
const registry = () => import('./commands/registry.js');
const system = () => import('./commands/system.js');
const copy = () => import('./commands/cp.js');

export const COMMANDS: CommandSpec[] = [
  {
    name: 'run',
    usage: 'run [OPTIONS] IMAGE [COMMAND] [ARG...]',
    summary: 'Create and run a new container from an image',
    flags: [...RUN_ONLY_FLAGS, ...CONTAINER_FLAGS],
    minArgs: 1,
    interspersed: false,
    load: async () => (await running()).runCommand,
  },
  {
    name: 'create',
    usage: 'create [OPTIONS] IMAGE [COMMAND] [ARG...]',
    summary: 'Create a new container',
    flags: CONTAINER_FLAGS,
    minArgs: 1,
    interspersed: false,
    load: async () => (await running()).createCommand,
  },
  {
    name: 'start',
    usage: 'start [OPTIONS] CONTAINER [CONTAINER...]',
    summary: 'Start one or more stopped containers',
    flags: [
      { name: 'attach', short: 'a', kind: 'bool', help: 'Attach STDOUT/STDERR and forward signals' },
      { name: 'interactive', short: 'i', kind: 'bool', help: "Attach container's STDIN" },
      { name: 'detach-keys', kind: 'string', help: 'Override the key sequence for detaching a container' },
    ],
    minArgs: 1,
    load: async () => (await running()).startCommand,
  },
  {
    name: 'attach',
    usage: 'attach [OPTIONS] CONTAINER',
    summary: 'Attach local standard input, output, and error streams to a running container',
    flags: [
      { name: 'no-stdin', kind: 'bool', help: 'Do not attach STDIN' },
      {
        name: 'sig-proxy',
        kind: 'bool',
        help: 'Proxy all received signals to the process',
        defaultValue: true,
      },
      { name: 'detach-keys', kind: 'string', help: 'Override the key sequence for detaching a container' },
    ],
    minArgs: 1,
    maxArgs: 1,
    load: async () => (await running()).attachCommand,
  },
  {
    name: 'exec',
    usage: 'exec [OPTIONS] CONTAINER COMMAND [ARG...]',
    summary: 'Execute a command in a running container',
    flags: [
      { name: 'detach', short: 'd', kind: 'bool', help: 'Detached mode: run command in the background' },
      { name: 'interactive', short: 'i', kind: 'bool', help: 'Keep STDIN open even if not attached' },
      { name: 'tty', short: 't', kind: 'bool', help: 'Allocate a pseudo-TTY' },
      { name: 'env', short: 'e', kind: 'list', help: 'Set environment variables' },
      { name: 'env-file', kind: 'list', help: 'Read in a file of environment variables' },
      {
        name: 'user',
        short: 'u',
        kind: 'string',
        help: 'Username or UID (format: "<name|uid>[:<group|gid>]")',
      },
      { name: 'workdir', short: 'w', kind: 'string', help: 'Working directory inside the container' },
      { name: 'privileged', kind: 'bool', help: 'Give extended privileges to the command' },
      { name: 'detach-keys', kind: 'string', help: 'Override the key sequence for detaching a container' },
    ],
    minArgs: 2,
    interspersed: false,
    load: async () => (await running()).execCommand,
  },
  {
    name: 'ps',
    usage: 'ps [OPTIONS]',
    summary: 'List containers',
    flags: [
      { name: 'all', short: 'a', kind: 'bool', help: 'Show all containers (default shows just running)' },
      FILTER,
      FORMAT,
      {
        name: 'last',
        short: 'n',
        kind: 'int',
        help: 'Show n last created containers (includes all states)',
        defaultValue: -1,
      },
      {
        name: 'latest',
        short: 'l',
        kind: 'bool',
        help: 'Show the latest created container (includes all states)',
      },
      NO_TRUNC,
      QUIET_IDS,
      { name: 'size', short: 's', kind: 'bool', help: 'Display total file sizes' },
    ],
    maxArgs: 0,
    load: async () => (await containers()).psCommand,
  },
  {
    name: 'stop',
    usage: 'stop [OPTIONS] CONTAINER [CONTAINER...]',
    summary: 'Stop one or more running containers',
    flags: STOP_TIMEOUT,
    minArgs: 1,
    load: async () => (await containers()).stopCommand,
  },
  {
    name: 'restart',
    usage: 'restart [OPTIONS] CONTAINER [CONTAINER...]',
    summary: 'Restart one or more containers',
    flags: STOP_TIMEOUT,
    minArgs: 1,
    load: async () => (await containers()).restartCommand,
  },
  {
    name: 'kill',
    usage: 'kill [OPTIONS] CONTAINER [CONTAINER...]',
    summary: 'Kill one or more running containers',
    flags: [{ name: 'signal', short: 's', kind: 'string', help: 'Signal to send to the container' }],
    minArgs: 1,
    load: async () => (await containers()).killCommand,
  },
  {
    name: 'pause',
    usage: 'pause CONTAINER [CONTAINER...]',
    summary: 'Pause all processes within one or more containers',
    flags: [],
    minArgs: 1,
    load: async () => (await containers()).pauseCommand,
  },
  {
    name: 'unpause',
    usage: 'unpause CONTAINER [CONTAINER...]',
    summary: 'Unpause all processes within one or more containers',
    flags: [],
    minArgs: 1,
    load: async () => (await containers()).unpauseCommand,
  },
  {
    name: 'rm',
    usage: 'rm [OPTIONS] CONTAINER [CONTAINER...]',
    summary: 'Remove one or more containers',
    flags: [
      {
        name: 'force',
        short: 'f',
        kind: 'bool',
        help: 'Force the removal of a running container (uses SIGKILL)',
      },
      {
        name: 'volumes',
        short: 'v',
        kind: 'bool',
        help: 'Remove anonymous volumes associated with the container',
      },
      { name: 'link', short: 'l', kind: 'bool', help: 'Remove the specified link' },
    ],
    minArgs: 1,
    load: async () => (await containers()).rmCommand,
  },
  {
    name: 'logs',
    usage: 'logs [OPTIONS] CONTAINER',
    summary: 'Fetch the logs of a container',
    flags: [
      { name: 'details', kind: 'bool', help: 'Show extra details provided to logs' },
      { name: 'follow', short: 'f', kind: 'bool', help: 'Follow log output' },
      {
        name: 'since',
        kind: 'string',
        help: 'Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m")',
      },
      {
        name: 'tail',
        short: 'n',
        kind: 'string',
        help: 'Number of lines to show from the end of the logs',
        defaultValue: 'all',
      },
      { name: 'timestamps', short: 't', kind: 'bool', help: 'Show timestamps' },
      { name: 'until', kind: 'string', help: 'Show logs before a timestamp or relative (e.g. "42m")' },
    ],
    minArgs: 1,
    maxArgs: 1,
    load: async () => (await containers()).logsCommand,
  },
  {
    name: 'inspect',
    usage: 'inspect [OPTIONS] NAME|ID [NAME|ID...]',
    summary: 'Return low-level information on objects',
    flags: [
      { name: 'format', short: 'f', kind: 'string', help: 'Format output using a custom template' },
      { name: 'size', short: 's', kind: 'bool', help: 'Display total file sizes if the type is container' },
      { name: 'type', kind: 'string', help: 'Only inspect objects of the given type' },
    ],
    minArgs: 1,
    load: async () => (await containers()).inspectCommand,
  },
  {
    name: 'container inspect',
    usage: 'container inspect [OPTIONS] CONTAINER [CONTAINER...]',
    summary: 'Display detailed information on one or more containers',
    flags: [
      { name: 'format', short: 'f', kind: 'string', help: 'Format output using a custom template' },
      { name: 'size', short: 's', kind: 'bool', help: 'Display total file sizes' },
    ],
    minArgs: 1,
    load: async () => (await containers()).containerInspectCommand,
  },
  {
    name: 'wait',
    usage: 'wait CONTAINER [CONTAINER...]',
    summary: 'Block until one or more containers stop, then print their exit codes',
    flags: [],
    minArgs: 1,
    load: async () => (await containers()).waitCommand,
  },
  {
    name: 'top',
    usage: 'top CONTAINER [ps OPTIONS]',
    summary: 'Display the running processes of a container',
    flags: [],
    minArgs: 1,
    interspersed: false,
    load: async () => (await containers()).topCommand,
  },
  {
    name: 'rename',
    usage: 'rename CONTAINER NEW_NAME',
    summary: 'Rename a container',
    flags: [],
    minArgs: 2,
    maxArgs: 2,
    load: async () => (await containers()).renameCommand,
  },
  {
    name: 'cp',
    usage:
      'cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n       strata cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH',
    summary: 'Copy files/folders between a container and the local filesystem',
    flags: [
      { name: 'archive', short: 'a', kind: 'bool', help: 'Archive mode (copy all uid/gid information)' },
      { name: 'follow-link', short: 'L', kind: 'bool', help: 'Always follow symbol link in SRC_PATH' },
      { name: 'quiet', short: 'q', kind: 'bool', help: 'Suppress progress output during copy' },
    ],
    minArgs: 2,
    maxArgs: 2,
    load: async () => (await copy()).cpCommand,
  },
  {
    name: 'export',
    usage: 'export [OPTIONS] CONTAINER',
    summary: "Export a container's filesystem as a tar archive",
    flags: [{ name: 'output', short: 'o', kind: 'string', help: 'Write to a file, instead of STDOUT' }],
    minArgs: 1,
    maxArgs: 1,
    load: async () => (await containers()).exportCommand,
  },
  {
    name: 'diff',
    usage: 'diff CONTAINER',
    summary: "Inspect changes to files or directories on a container's filesystem",
    flags: [],
    minArgs: 1,
    maxArgs: 1,
    load: async () => (await containers()).diffCommand,
  },
  {
    name: 'container prune',
    usage: 'container prune [OPTIONS]',
    summary: 'Remove all stopped containers',
    flags: [FORCE_PRUNE, PRUNE_FILTER],
    maxArgs: 0,
    load: async () => (await containers()).containerPruneCommand,
  },
  {
    name: 'images',
    usage: 'images [OPTIONS] [REPOSITORY[:TAG]]',
    summary: 'List images',
    flags: [
      { name: 'all', short: 'a', kind: 'bool', help: 'Show all images (default hides intermediate images)' },
      { name: 'digests', kind: 'bool', help: 'Show digests' },
      FILTER,
      FORMAT,
      NO_TRUNC,
      QUIET_IDS,
    ],
    maxArgs: 1,
    load: async () => (await images()).imagesCommand,
  },
  {
    name: 'image inspect',
    usage: 'image inspect [OPTIONS] IMAGE [IMAGE...]',
    summary: 'Display detailed information on one or more images',
    flags: [{ name: 'format', short: 'f', kind: 'string', help: 'Format output using a custom template' }],
    minArgs: 1,
    load: async () => (await containers()).imageInspectCommand,
  },
  {
    name: 'history',
    usage: 'history [OPTIONS] IMAGE',
    summary: 'Show the history of an image',
    flags: [
      FORMAT,
      {
        name: 'human',
        short: 'H',
        kind: 'bool',
        help: 'Print sizes and dates in human readable format',
        defaultValue: true,
      },
      NO_TRUNC,
      QUIET_IDS,
    ],
    minArgs: 1,
    maxArgs: 1,
    load: async () => (await images()).historyCommand,
  },
  {
    name: 'tag',
    usage: 'tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]',
    summary: 'Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE',
    flags: [],
    minArgs: 2,
    maxArgs: 2,
    load: async () => (await images()).tagCommand,
  },
  {
    name: 'rmi',
    usage: 'rmi [OPTIONS] IMAGE [IMAGE...]',
    summary: 'Remove one or more images',
    flags: [
      { name: 'force', short: 'f', kind: 'bool', help: 'Force removal of the image' },
      { name: 'no-prune', kind: 'bool', help: 'Do not delete untagged parents' },
    ],
    minArgs: 1,
    load: async () => (await images()).rmiCommand,
  },
  {
    name: 'import',
    usage: 'import [OPTIONS] file|URL|- [REPOSITORY[:TAG]]',
    summary: 'Import the contents from a tarball to create a filesystem image',
    flags: [
      { name: 'change', short: 'c', kind: 'list', help: 'Apply Dockerfile instruction to the created image' },
      { name: 'message', short: 'm', kind: 'string', help: 'Set commit message for imported image' },
      { name: 'platform', kind: 'string', help: 'Set platform if server is multi-platform capable' },
    ],
    minArgs: 1,
    maxArgs: 2,
    load: async () => (await images()).importCommand,
  },
  {
    name: 'load',
    usage: 'load [OPTIONS]',
    summary: 'Load an image from a tar archive or STDIN',
    flags: [
      { name: 'input', short: 'i', kind: 'string', help: 'Read from tar archive file, instead of STDIN' },
      { name: 'quiet', short: 'q', kind: 'bool', help: 'Suppress the load output' },
    ],
    maxArgs: 0,
    load: async () => (await images()).loadCommand,
  },
  {
    name: 'save',
    usage: 'save [OPTIONS] IMAGE [IMAGE...]',
    summary: 'Save one or more images to a tar archive (streamed to STDOUT by default)',
    flags: [{ name: 'output', short: 'o', kind: 'string', help: 'Write to a file, instead of STDOUT' }],
    minArgs: 1,
    load: async () => (await images()).saveCommand,
  },
  {
    name: 'image prune',
    usage: 'image prune [OPTIONS]',
    summary: 'Remove unused images',
    flags: [
      { name: 'all', short: 'a', kind: 'bool', help: 'Remove all unused images, not just dangling ones' },
      FORCE_PRUNE,
      PRUNE_FILTER,
    ],
    maxArgs: 0,
    load: async () => (await images()).imagePruneCommand,
  },
  {
    name: 'pull',
    usage: 'pull [OPTIONS] NAME[:TAG|@DIGEST]',
    summary: 'Download an image from a registry',
    flags: [
      { name: 'all-tags', short: 'a', kind: 'bool', help: 'Download all tagged images in the repository' },
      { name: 'platform', kind: 'string', help: 'Set platform if server is multi-platform capable' },
      { name: 'quiet', short: 'q', kind: 'bool', help: 'Suppress verbose output' },
    ],
    minArgs: 1,
    maxArgs: 1,
    load: async () => (await registry()).pullCommand,
  },
  {
    name: 'push',
    usage: 'push [OPTIONS] NAME[:TAG]',
    summary: 'Upload an image to a registry',
    flags: [
      { name: 'all-tags', short: 'a', kind: 'bool', help: 'Push all tags of an image to the repository' },
      { name: 'quiet', short: 'q', kind: 'bool', help: 'Suppress verbose output' },
    ],
    minArgs: 1,
    maxArgs: 1,
    load: async () => (await registry()).pushCommand,
  },
  {
    name: 'login',
    usage: 'login [OPTIONS] [SERVER]',
    summary: 'Authenticate to a registry',
    flags: [
      { name: 'username', short: 'u', kind: 'string', help: 'Username' },
      { name: 'password', short: 'p', kind: 'string', help: 'Password' },
      { name: 'password-stdin', kind: 'bool', help: 'Take the password from stdin' },
    ],
    maxArgs: 1,
    load: async () => (await registry()).loginCommand,
  },
  {
    name: 'logout',
    usage: 'logout [SERVER]',
    summary: 'Log out from a registry',
    flags: [],
    maxArgs: 1,
    load: async () => (await registry()).logoutCommand,
  },
  {
    name: 'version',
    usage: 'version [OPTIONS]',
    summary: 'Show the Strata version information',
    flags: [{ name: 'format', short: 'f', kind: 'string', help: 'Format output using a custom template' }],
    maxArgs: 0,
    load: async () => (await system()).versionCommand,
  },
  {
    name: 'info',
    usage: 'info [OPTIONS]',
    summary: 'Display system-wide information',
    flags: [{ name: 'format', short: 'f', kind: 'string', help: 'Format output using a custom template' }],
    maxArgs: 0,
    load: async () => (await system()).infoCommand,
  },
  {
    name: 'events',
    usage: 'events [OPTIONS]',
    summary: 'Get real time events from the server',
    flags: [
      FILTER,
      FORMAT,
      { name: 'since', kind: 'string', help: 'Show all events created since timestamp' },
      { name: 'until', kind: 'string', help: 'Stream events until this timestamp' },
    ],
    maxArgs: 0,
    load: async () => (await system()).eventsCommand,
  },
];

/** `strata container ls` → `ps`, `strata image rm` → `rmi`, … */
const GROUPS: Record<string, Record<string, string>> = {
  container: {
    ls: 'ps',
    list: 'ps',
    ps: 'ps',
    run: 'run',
    create: 'create',
    start: 'start',
    stop: 'stop',
    restart: 'restart',
    kill: 'kill',
    pause: 'pause',
    unpause: 'unpause',
    rm: 'rm',
    remove: 'rm',
    logs: 'logs',
    inspect: 'container inspect',
    wait: 'wait',
    exec: 'exec',
    attach: 'attach',
    top: 'top',
    rename: 'rename',
    cp: 'cp',
    export: 'export',
    diff: 'diff',
    prune: 'container prune',
  },
  image: {
    ls: 'images',
    list: 'images',
    rm: 'rmi',
    remove: 'rmi',
    inspect: 'image inspect',
    history: 'history',
    tag: 'tag',
    import: 'import',
    load: 'load',
    save: 'save',
    prune: 'image prune',
    pull: 'pull',
    push: 'push',
  },
  system: { info: 'info', events: 'events' },
};

COMMANDS.push(...MORE_COMMANDS);
for (const [group, verbs] of Object.entries(MORE_GROUPS)) GROUPS[group] = { ...GROUPS[group], ...verbs };

export interface ResolvedCommand {
  spec: CommandSpec;
  /** What the user typed (`container ls`), for messages. */
  typed: string;
  rest: string[];
}

/** Finds the command for argv (after global flags); undefined when unknown. */
export function resolveCommand(argv: string[]): ResolvedCommand | { group: string } | undefined {
  const [first, second] = argv;
  const group = GROUPS[first];
  if (group) {
    if (second === undefined || second.startsWith('-')) return { group: first };
    const target = group[second];
    const spec = target ? COMMANDS.find((c) => c.name === target) : undefined;
    return spec ? { spec, typed: `${first} ${second}`, rest: argv.slice(2) } : undefined;
  }
  const spec = COMMANDS.find((c) => c.name === first && !c.name.includes(' '));
  return spec ? { spec, typed: first, rest: argv.slice(1) } : undefined;
}

export function groupCommands(group: string): [string, CommandSpec][] {
  return Object.entries(GROUPS[group] ?? {}).flatMap(([verb, target]) => {
    const spec = COMMANDS.find((c) => c.name === target);
    return spec ? [[verb, spec] as [string, CommandSpec]] : [];
  });
}
