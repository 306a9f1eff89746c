import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { Router } from '../api/router.js';
import { registerArchiveRoutes } from '../api/routes/archive.js';
import { registerBuildRoutes } from '../api/routes/build.js';
import { registerCommitRoutes } from '../api/routes/commit.js';
import { registerContainerRoutes } from '../api/routes/containers.js';
import { registerDistributionRoutes } from '../api/routes/distribution.js';
import { registerExecRoutes } from '../api/routes/exec.js';
import { registerHiveRoutes } from '../api/routes/hive.js';
import { registerImageRoutes } from '../api/routes/images.js';
import { registerSystemRoutes } from '../api/routes/system.js';
import { createApiServer } from '../api/server.js';
import { BuildService, buildSchema } from '../build/service.js';
import { errorMessage, StrataError } from '../common/errors.js';
import { EventBus } from '../common/events.js';
import { type LogLevel, logger, setLogLevel } from '../common/log.js';
import { ContainerService } from '../containers/service.js';
import { containersSchema } from '../containers/store.js';
import { FileContentStore } from '../content/store.js';
import { mirrorUrl, parseMirror } from '../distribution/hosts.js';
import { DistributionService } from '../distribution/service.js';
import { ImageService, imagesSchema } from '../images/service.js';
import { detectCgroupLayout, repairHybridCgroups } from '../runtime/cgroups.js';
import { OciRuntime } from '../runtime/oci.js';
import { OverlaySnapshotter, snapshotsSchema } from '../snapshots/store.js';
import { openStore } from '../store/db.js';
import { DaemonExtensions, extensionSchemas } from './extensions.js';
import { DaemonSecurity, SECURITY_DAEMON_OPTIONS, SECURITY_USAGE } from './security-setup.js';

const log = logger('daemon');

export const DEFAULT_ROOT = '/var/lib/strata';
export const DEFAULT_SOCKET = '/run/strata/strata.sock';

const USAGE = `Usage: strata daemon [--root DIR] [--socket PATH] [--default-runtime crun|runc] [--log-level LEVEL]
                     [--insecure-registry HOST:PORT]... [--registry-mirror URL]...

Runs the Strata engine in the foreground, serving the Docker Engine API on a unix socket.
  --root DIR             state directory (default ${DEFAULT_ROOT})
  --socket PATH          API socket (default ${DEFAULT_SOCKET}), mode 0660, group "strata" when it exists
  --default-runtime NAME OCI runtime for containers that do not name one (default crun)
  --log-level LEVEL      debug, info, warn or error (default info)
  --insecure-registry HOST:PORT
                         allow plain HTTP (and unverified TLS) to this registry; repeatable;
                         also HOST or an IPv4 CIDR. Loopback registries are always allowed
  --registry-mirror URL  a Docker Hub mirror (http://HOST:PORT or https://…), tried before the Hub
                         for pulls of docker.io images; repeatable, tried in the order given
  --dns-upstream IP[:PORT]
                         resolver for names the networks' DNS servers do not know (default: the
                         nameservers of /etc/resolv.conf); repeatable
${SECURITY_USAGE}`;

function which(binary: string): string | null {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    const p = path.join(dir, binary);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // next
    }
  }
  return null;
}

/**
 * Partial downloads are kept so that the next pull of the blob resumes after them; one that nobody
 * resumed within a day (the image was never pulled again) is garbage.
 */
const INGEST_MAX_AGE_MS = 24 * 60 * 60 * 1000;
const INGEST_SWEEP_INTERVAL_MS = 60 * 60 * 1000;

function sweepStaleIngests(content: FileContentStore): void {
  try {
    const removed = content.removeStaleIngests(INGEST_MAX_AGE_MS);
    if (removed > 0) log.info('removed partial downloads nobody resumed', { count: removed });
  } catch (err) {
    log.warn('sweeping partial downloads failed', { error: errorMessage(err) });
  }
}

/** Refuses to start over a live daemon; removes a stale socket file left by a crash. */
async function claimSocket(socketPath: string): Promise<void> {
  if (!fs.existsSync(socketPath)) return;
  const alive = await new Promise<boolean>((resolve) => {
    const s = net.connect(socketPath);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (alive) throw new Error(`another daemon is already serving ${socketPath}`);
  fs.rmSync(socketPath, { force: true });
}

function strataGroupId(): number | null {
  try {
    const line = fs
      .readFileSync('/etc/group', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('strata:'));
    return line ? Number(line.split(':')[2]) : null;
  } catch {
    return null;
  }
}

/**
 * `strata daemon`: a bad flag or setting ends it with a one-line message (exit 1); an unexpected
 * failure while starting keeps its stack.
 */
export async function main(argv: string[]): Promise<void> {
  try {
    await runDaemon(argv);
  } catch (err) {
    const expected =
      err instanceof StrataError || String((err as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS');
    process.stderr.write(
      `strata daemon: ${expected ? errorMessage(err) : ((err as Error).stack ?? errorMessage(err))}\n`,
    );
    // Exits now: whatever had started (timers, watchers) must not keep a half-started daemon alive.
    process.exit(1);
  }
}

async function runDaemon(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv.slice(1),
    options: {
      root: { type: 'string', default: DEFAULT_ROOT },
      socket: { type: 'string', default: DEFAULT_SOCKET },
      'default-runtime': { type: 'string', default: 'crun' },
      'log-level': { type: 'string' },
      'insecure-registry': { type: 'string', multiple: true, default: [] },
      'registry-mirror': { type: 'string', multiple: true, default: [] },
      'dns-upstream': { type: 'string', multiple: true, default: [] },
      help: { type: 'boolean', short: 'h' },
      ...SECURITY_DAEMON_OPTIONS,
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (values['log-level']) setLogLevel(values['log-level'] as LogLevel);
  // Checked before anything starts: a bad mirror is a one-line error, not a half-started daemon.
  const registryMirrors = values['registry-mirror'].map((value) => mirrorUrl(parseMirror(value)));
  const root = path.resolve(values.root);
  const socketPath = path.resolve(values.socket);
  fs.mkdirSync(root, { recursive: true, mode: 0o711 });
  fs.mkdirSync(path.dirname(socketPath), { recursive: true });
  await claimSocket(socketPath);

  // Runtimes: crun by default; on a hybrid cgroup host crun needs the v2 mount emptied first.
  const runtimes = new Map<string, OciRuntime>();
  for (const name of ['crun', 'runc'] as const) {
    const binary = which(name);
    if (binary) runtimes.set(name, new OciRuntime(name, binary, path.join(root, 'runtime', name)));
  }
  let defaultRuntime = values['default-runtime'];
  let layout = detectCgroupLayout();
  if (layout === 'hybrid') {
    if (repairHybridCgroups(log)) layout = detectCgroupLayout();
    if (layout === 'hybrid' && defaultRuntime === 'crun') {
      log.warn('cgroup layout is hybrid and could not be repaired; crun refuses it, falling back to runc');
      runtimes.delete('crun');
      defaultRuntime = 'runc';
    }
  }
  if (!runtimes.has(defaultRuntime)) {
    throw new Error(
      `OCI runtime ${defaultRuntime} not found on PATH (install the ${defaultRuntime} package)`,
    );
  }
  log.info(
    `using OCI runtime ${defaultRuntime} (cgroup layout ${layout}); available: ${[...runtimes.keys()].join(', ')}`,
  );

  const db = openStore(root, [
    snapshotsSchema,
    ...imagesSchema,
    containersSchema,
    buildSchema,
    ...extensionSchemas,
  ]);
  const events = new EventBus();
  const security = await DaemonSecurity.prepare(values, root, layout, db);
  const content = new FileContentStore(root);
  const snapshotter = new OverlaySnapshotter(db, path.join(root, 'snapshots'));
  const images = new ImageService({ db, root, content, snapshotter, events });
  const containers = new ContainerService({
    db,
    root,
    images,
    snapshotter: security.containerSnapshotter(snapshotter),
    events,
    ...security.containerHooks(),
    runtimes,
    defaultRuntime,
    onContainerRemoved: () => {
      images
        .collectGarbage()
        .catch((err) => log.warn('image garbage collection failed', { error: errorMessage(err) }));
    },
  });
  images.setImageUsers((imageId) =>
    containers
      .all()
      .filter((c) => c.imageId === imageId)
      .map((c) => ({ id: c.id, running: containers.isRunning(c) })),
  );
  const extensions = new DaemonExtensions({
    db,
    root,
    events,
    containers,
    dnsUpstreams: values['dns-upstream'],
  });
  await extensions.init();
  containers.watchExits();
  await containers.recover();
  await extensions.afterRecover();
  await images
    .collectGarbage()
    .catch((err) => log.warn('image garbage collection failed', { error: errorMessage(err) }));
  sweepStaleIngests(content);
  setInterval(() => sweepStaleIngests(content), INGEST_SWEEP_INTERVAL_MS).unref();

  const router = new Router();
  registerSystemRoutes(router, {
    containers,
    events,
    root,
    defaultRuntime,
    runtimes: [...runtimes.keys()],
    imageCount: () => images.list({ all: false, filters: new Map() }).length,
    cgroupVersion: layout === 'v2' ? '2' : '1',
    startedAt: Date.now(),
    registryMirrors,
    extraInfo: security.info,
  });
  registerExecRoutes(router, { containers });
  extensions.registerRoutes(router);
  registerArchiveRoutes(router, { containers });
  registerHiveRoutes(router, { containers, images, snapshotter });
  registerContainerRoutes(router, {
    containers,
    resolveImageId: (ref) => {
      try {
        return images.resolve(ref).id;
      } catch {
        return null;
      }
    },
  });
  const distribution = new DistributionService({
    db,
    images,
    content,
    snapshotter,
    insecureRegistries: values['insecure-registry'],
    registryMirrors,
  });
  const builder = new BuildService({
    db,
    root,
    images,
    containers,
    snapshotter,
    events,
    registry: distribution,
  });
  registerDistributionRoutes(router, { distribution });
  registerImageRoutes(router, { images, events, distribution });
  registerBuildRoutes(router, { builder });
  registerCommitRoutes(router, { containers, images, snapshotter, events });

  const middleware = security.registerRoutes(router, {
    containers,
    images,
    snapshotter,
    events,
    db,
    volumes: extensions.volumes,
  });
  const server = createApiServer(router, { middleware });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  fs.chmodSync(socketPath, 0o660);
  const gid = strataGroupId();
  if (gid !== null) fs.chownSync(socketPath, 0, gid);
  log.info(`API listening on ${socketPath}`, { root });
  const tcpServers = await security.listen(server);

  const shutdown = async (signal: string) => {
    log.info(`received ${signal}; stopping (containers keep running)`);
    containers.stopWatching();
    server.close();
    // Directories of removed containers are deleted in the background; give that a moment to finish
    // (what is left is swept at the next start).
    await Promise.race([containers.removalsSettled(), new Promise((r) => setTimeout(r, 5000).unref())]);
    await extensions.shutdown();
    for (const tcp of tcpServers) tcp.close();
    for (const s of [socketPath]) fs.rmSync(s, { force: true });
    db.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('uncaughtException', (err) => {
    log.error('uncaught exception', { error: errorMessage(err), stack: err.stack ?? '' });
  });
  process.on('unhandledRejection', (err) => {
    log.error('unhandled rejection', { error: errorMessage(err) });
  });
}
