import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Duplex } from 'node:stream';
import type { Digest } from '../common/digest.js';
import {
  Conflict,
  errorMessage,
  InvalidArgument,
  isErrnoCode,
  NotFound,
  NotModified,
  StrataError,
  SystemError,
} from '../common/errors.js';
import type { EventBus } from '../common/events.js';
import { writeFileAtomicSync } from '../common/fsutil.js';
import { newObjectId, randomContainerName } from '../common/ids.js';
import { logger } from '../common/log.js';
import { type Span, TRACE_ENABLED, trace } from '../common/trace.js';
import { treeSize } from '../native/index.js';
import { resizeTerminal } from '../runtime/attach.js';
import { cgroupPids } from '../runtime/cgroups.js';
import { conmonCreate } from '../runtime/conmon.js';
import type { OciRuntime } from '../runtime/oci.js';
import { buildSpec, type OciMount, type OciSpec } from '../runtime/spec.js';
import { resolveUser } from '../runtime/user.js';
import type { Snapshotter } from '../snapshots/snapshotter.js';
import type { Db } from '../store/db.js';
import { AttachHub } from './attach-hub.js';
import { type ImageRunConfig, mergeCreateConfig, parseSignal, validateContainerName } from './config.js';
import { type ExecHost, ExecManager } from './exec.js';
import type { ContainerExtensions, StartPlan } from './extensions.js';
import { ContainerTable } from './store.js';
import { type ContainerRecord, type CreateBody, NEVER } from './types.js';

const log = logger('containers');

/** What the container part needs from the image part. */
export interface ImageProvider {
  resolve(ref: string): { id: Digest; chainId: Digest | null; config: { config?: ImageRunConfig | null } };
}

export interface ContainerServiceOptions {
  db: Db;
  /** The daemon root (containers live in `<root>/containers/<id>`). */
  root: string;
  images: ImageProvider;
  snapshotter: Snapshotter;
  events: EventBus;
  runtimes: Map<string, OciRuntime>;
  defaultRuntime: string;
  /** Called after a container's files are gone (lets the image part free layers nobody uses). */
  onContainerRemoved?: () => void;
  /** Checks and normalises a create request's HostConfig in place; returns warnings (runtime/security.ts). */
  checkHostConfig?: (host: Record<string, unknown>) => string[];
  /** Last changes to a container's OCI spec before it is written: seccomp, devices, namespaces, limits. */
  decorateSpec?: (spec: OciSpec, record: ContainerRecord) => void;
}

export type WaitCondition = 'not-running' | 'next-exit' | 'removed';

interface Waiter {
  condition: WaitCondition;
  resolve: (result: { StatusCode: number; Error: { Message: string } | null }) => void;
}

/**
 * Container records and their lifecycle: create → start → (pause/unpause) → exit → start again or
 * remove. The record in memory is the source of truth while the daemon runs; every change is written to
 * SQLite before it is announced. Processes run under conmon, so they outlive the daemon: on start-up
 * `recover()` reconciles the records with the exit files conmon wrote meanwhile and with the runtime.
 */
export class ContainerService implements ExecHost {
  readonly containersDir: string;
  readonly exitDir: string;
  private readonly table: ContainerTable;
  private readonly records = new Map<string, ContainerRecord>();
  private readonly names = new Map<string, string>();
  private readonly waiters = new Map<string, Waiter[]>();
  private readonly hubs = new Map<string, AttachHub>();
  private readonly stopListeners = new Map<string, Set<() => void>>();
  private readonly exiting = new Set<string>();
  /** Total size of each image layer chain containers use (layers are immutable). */
  private readonly chainSizes = new Map<Digest, number>();
  /** Runtime state of exited containers being deleted. */
  private readonly deletingRuntime = new Map<string, Promise<void>>();
  /** Root file systems being unmounted after an exit (a start or `cp` waits for it). */
  private readonly unmounting = new Map<string, Promise<void>>();
  /** Deletion of removed containers' directories, one at a time, after the API has answered. */
  private trash: Promise<void> = Promise.resolve();
  private watcher: fs.FSWatcher | null = null;
  /** Containers whose start is in progress (a racing exit must wait for the record). */
  private readonly starting = new Map<string, Promise<void>>();
  readonly execs: ExecManager = new ExecManager(this);
  /** Networks, mounts, restart policies, health checks (extensions.ts); set by the daemon. */
  extensions: ContainerExtensions | null = null;

  constructor(private readonly opts: ContainerServiceOptions) {
    this.containersDir = path.join(opts.root, 'containers');
    this.exitDir = path.join(opts.root, 'exits');
    fs.mkdirSync(this.containersDir, { recursive: true });
    fs.mkdirSync(this.exitDir, { recursive: true });
    this.table = new ContainerTable(opts.db);
    for (const record of this.table.all()) {
      this.records.set(record.id, record);
      this.names.set(record.name, record.id);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // lookup

  all(): ContainerRecord[] {
    return [...this.records.values()];
  }

  /** Full id, unique id prefix, name or `/name` → record; 404 `No such container: ref` otherwise. */
  get(ref: string): ContainerRecord {
    const found = this.find(ref);
    if (!found) throw new NotFound(`No such container: ${ref}`);
    return found;
  }

  find(ref: string): ContainerRecord | null {
    if (ref === '') return null;
    const exact = this.records.get(ref);
    if (exact) return exact;
    const byName = this.names.get(ref.replace(/^\//, ''));
    if (byName) return this.records.get(byName) ?? null;
    if (/^[a-f0-9]+$/.test(ref)) {
      const matches = [...this.records.keys()].filter((id) => id.startsWith(ref));
      if (matches.length === 1) return this.records.get(matches[0]) ?? null;
      if (matches.length > 1) throw new NotFound(`No such container: ${ref} (ambiguous id prefix)`);
    }
    return null;
  }

  containerDir(id: string): string {
    return path.join(this.containersDir, id);
  }

  logPath(id: string): string {
    return path.join(this.containerDir(id), 'ctr.log');
  }

  isRunning(record: ContainerRecord): boolean {
    return record.state.status === 'running' || record.state.status === 'paused';
  }

  runtimeOf(record: ContainerRecord): OciRuntime {
    return this.runtimeFor(record);
  }

  execEvent(record: ContainerRecord, action: string, extra: Record<string, string>): void {
    this.event(record, action, extra);
  }

  private runtimeFor(record: ContainerRecord): OciRuntime {
    const rt = this.opts.runtimes.get(record.runtime);
    if (!rt) throw new SystemError(`runtime ${record.runtime} is not available`);
    return rt;
  }

  private save(record: ContainerRecord): void {
    this.table.save(record);
  }

  /** Writes a record changed outside this class (network connect, restart bookkeeping). */
  persist(record: ContainerRecord): void {
    if (this.records.get(record.id) === record) this.save(record);
  }

  private event(record: ContainerRecord, action: string, extra: Record<string, string> = {}): void {
    this.opts.events.publish('container', action, record.id, {
      ...record.config.Labels,
      image: record.imageRef,
      name: record.name,
      ...extra,
    });
  }

  // ---------------------------------------------------------------------------------------------
  // create

  create(body: CreateBody, requestedName: string | null): { Id: string; Warnings: string[] } {
    const id = newObjectId();
    const span = trace.span('create', id);
    const imageRef = body.Image ?? '';
    if (imageRef === '') throw new InvalidArgument('Config.Image is required');
    const image = this.opts.images.resolve(imageRef);
    span.mark('image');
    let name: string;
    if (requestedName !== null && requestedName !== '') {
      name = validateContainerName(requestedName);
      const existing = this.names.get(name);
      if (existing) {
        throw new Conflict(
          `Conflict. The container name "/${name}" is already in use by container "${existing}". You have to remove (or rename) that container to be able to reuse that name.`,
        );
      }
    } else {
      do name = randomContainerName();
      while (this.names.has(name));
    }
    const host = body.HostConfig ?? {};
    const warnings = this.opts.checkHostConfig?.(host) ?? [];
    span.mark('check');
    const runtimeName = host.Runtime && host.Runtime !== '' ? host.Runtime : this.opts.defaultRuntime;
    if (!this.opts.runtimes.has(runtimeName))
      throw new InvalidArgument(`unknown or invalid runtime name: ${runtimeName}`);
    const restart = host.RestartPolicy?.Name ?? '';
    if (!['', 'no', 'always', 'on-failure', 'unless-stopped'].includes(restart)) {
      throw new InvalidArgument(`invalid restart policy '${restart}'`);
    }
    if (host.AutoRemove && restart !== '' && restart !== 'no') {
      throw new InvalidArgument(
        "Conflicting options: AutoRemove and restart policy ('--rm' and '--restart')",
      );
    }
    const merged = mergeCreateConfig(body, image.config.config ?? {}, id, imageRef);
    const record: ContainerRecord = {
      id,
      name,
      created: new Date().toISOString(),
      path: merged.path,
      args: merged.args,
      imageRef,
      imageId: image.id,
      chainId: image.chainId,
      config: merged.config,
      hostConfig: {
        NetworkMode: 'default',
        RestartPolicy: {
          Name: restart === '' ? 'no' : restart,
          MaximumRetryCount: host.RestartPolicy?.MaximumRetryCount ?? 0,
        },
        LogConfig: { Type: 'k8s-file', Config: {} },
        ...host,
        Runtime: runtimeName,
      },
      networkingConfig: (body.NetworkingConfig as Record<string, unknown> | undefined) ?? {},
      state: {
        status: 'created',
        pid: 0,
        exitCode: 0,
        error: '',
        startedAt: NEVER,
        finishedAt: NEVER,
        oomKilled: false,
        conmonPid: 0,
      },
      restartCount: 0,
      runtime: runtimeName as 'crun' | 'runc',
      hasStarted: false,
    };
    span.mark('merge');
    this.extensions?.created(record, body);
    span.mark('extensions');
    const dir = this.containerDir(id);
    try {
      fs.mkdirSync(dir, { mode: 0o710 });
      this.opts.snapshotter.prepareContainerLayer(dir);
      span.mark('dirs');
      this.table.insert(record);
      span.mark('db');
    } catch (err) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    this.records.set(id, record);
    this.names.set(name, id);
    this.event(record, 'create');
    span.mark('event');
    span.end();
    return { Id: id, Warnings: warnings };
  }

  // ---------------------------------------------------------------------------------------------
  // start

  async start(ref: string): Promise<void> {
    const record = this.get(ref);
    if (this.isRunning(record)) throw new NotModified();
    if (record.state.status === 'removing')
      throw new Conflict(`container ${record.id} is marked for removal and cannot be started`);
    const pending = this.starting.get(record.id);
    if (pending) {
      await pending;
      throw new NotModified();
    }
    const work = this.doStart(record);
    this.starting.set(record.id, work);
    try {
      await work;
    } catch (err) {
      this.starting.delete(record.id);
      // --rm containers go away even when they never ran (dockerd answers `removed` waiters then).
      if (record.hostConfig.AutoRemove)
        await this.remove(record.id, { force: true, volumes: true }).catch(() => undefined);
      throw err;
    } finally {
      this.starting.delete(record.id);
    }
    // The process may already have exited (short commands): the exit watcher ignored the file while
    // the start was in progress.
    if (this.isRunning(record) && fs.existsSync(path.join(this.exitDir, record.id)))
      void this.handleExit(record.id);
  }

  private async doStart(record: ContainerRecord): Promise<void> {
    const dir = this.containerDir(record.id);
    const runtime = this.runtimeFor(record);
    const host = record.hostConfig;
    let created = false;
    let plan: StartPlan | null = null;
    const span = trace.span('start', record.id);
    const mark = (label: string) => span.mark(label);
    // The clean-up after a previous run of this container must be over (runtime state, root unmount).
    await this.deletingRuntime.get(record.id);
    await this.unmounting.get(record.id);
    try {
      const rootfs = this.opts.snapshotter.isContainerMounted(dir)
        ? path.join(dir, 'rootfs')
        : this.opts.snapshotter.mountContainer(dir, record.chainId);
      mark('mount');
      const etcMounts = this.writeEtcFiles(record, dir);
      mark('etc');
      plan = this.extensions ? await this.extensions.prepareStart(record, rootfs, dir, etcMounts) : null;
      mark('prepare');
      const user = resolveUser(rootfs, record.config.User, host.GroupAdd ?? []);
      mark('user');
      const env = [...record.config.Env];
      const has = (k: string) => env.some((e) => e.startsWith(`${k}=`));
      if (!has('PATH')) env.unshift('PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
      if (!has('HOSTNAME')) env.splice(1, 0, `HOSTNAME=${record.config.Hostname}`);
      if (record.config.Tty && !has('TERM')) env.push('TERM=xterm');
      if (!has('HOME')) env.push(`HOME=${user.home || '/'}`);
      const cwd = record.config.WorkingDir || '/';
      if (cwd !== '/') this.ensureWorkdir(rootfs, cwd, user.uid, user.gid);
      const networkMode = host.NetworkMode ?? 'default';
      const spec = buildSpec({
        args: [...(plan?.argsPrefix ?? []), record.path, ...record.args],
        env,
        cwd,
        user,
        tty: record.config.Tty ?? false,
        consoleSize: (host.ConsoleSize as [number, number] | undefined) ?? null,
        rootfs,
        readonlyRootfs: host.ReadonlyRootfs ?? false,
        hostname: record.config.Hostname ?? record.id.slice(0, 12),
        mounts: plan?.mounts ?? etcMounts,
        cgroupsPath: `/strata/${record.id}`,
        privileged: host.Privileged ?? false,
        capAdd: host.CapAdd ?? [],
        capDrop: host.CapDrop ?? [],
        ulimits: host.Ulimits ?? [],
        shmSize: host.ShmSize ?? 0,
        resources: resourcesFromHostConfig(host),
        noNewPrivileges: (host.SecurityOpt ?? []).some((o) => /^no-new-privileges(:true|=true)?$/.test(o)),
        ...(networkMode === 'host'
          ? { netnsPath: '/proc/1/ns/net' }
          : plan?.netnsPath
            ? { netnsPath: plan.netnsPath }
            : {}),
      });
      if (networkMode === 'host') {
        const linux = spec.linux as { namespaces: { type: string }[] };
        linux.namespaces = linux.namespaces.filter((n) => n.type !== 'network');
      }
      mark('spec');
      this.opts.decorateSpec?.(spec, record);
      const specToken = runtime.prepareSpec(spec);
      mark('security');
      fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(spec));
      mark('write');
      for (const f of ['attach', 'ctl', 'winsz', 'pidfile', 'conmon.pid', 'oom'])
        fs.rmSync(path.join(dir, f), { force: true });
      fs.rmSync(path.join(this.exitDir, record.id), { force: true });
      fs.rmSync(path.join(dir, 'persist'), { recursive: true, force: true });
      // A stale runtime state from a crash would make create fail with "already exists".
      if (fs.existsSync(path.join(runtime.stateRoot, record.id)))
        await runtime.delete(record.id, true).catch(() => undefined);
      mark('clean');
      const hub = this.hubFor(record);
      const { pid, conmonPid } = await conmonCreate({
        id: record.id,
        bundleDir: dir,
        logPath: this.logPath(record.id),
        exitDir: this.exitDir,
        persistDir: path.join(dir, 'persist'),
        tty: record.config.Tty ?? false,
        openStdin: record.config.OpenStdin ?? false,
        leaveStdinOpen: !(record.config.StdinOnce ?? false),
        runtime,
        span,
      });
      created = true;
      runtime.created(record.id, specToken);
      mark('create');
      await plan?.attach(pid);
      mark('network');
      if (hub.needsConnection || record.config.OpenStdin) await hub.connect();
      const consoleSize = host.ConsoleSize as number[] | undefined;
      if (record.config.Tty && consoleSize && consoleSize[0] > 0)
        resizeTerminal(dir, consoleSize[0], consoleSize[1]);
      mark('attach');
      await runtime.start(record.id);
      mark('start');
      record.state = {
        ...record.state,
        status: 'running',
        pid,
        conmonPid,
        exitCode: 0,
        error: '',
        oomKilled: false,
        startedAt: new Date().toISOString(),
        finishedAt: record.hasStarted ? record.state.finishedAt : NEVER,
      };
      record.hasStarted = true;
      this.save(record);
      mark('db');
      this.event(record, 'start');
      this.extensions?.started(record);
      mark('started');
      span.end();
    } catch (err) {
      const message = startErrorMessage(errorMessage(err));
      log.debug('start failed', { id: record.id, error: message });
      if (created) await runtime.delete(record.id, true).catch(() => undefined);
      await plan?.abort().catch(() => undefined);
      this.hubs.get(record.id)?.finish();
      this.hubs.delete(record.id);
      try {
        this.opts.snapshotter.unmountContainer(dir);
      } catch {
        // best effort
      }
      record.state = {
        ...record.state,
        status: record.hasStarted ? 'exited' : 'created',
        error: message,
        exitCode: startErrorExitCode(message),
        pid: 0,
      };
      this.save(record);
      this.resolveWaiters(record, ['next-exit', 'not-running']);
      if (err instanceof StrataError && err.status < 500) throw err;
      throw new InvalidArgument(message);
    }
  }

  private ensureWorkdir(rootfs: string, cwd: string, uid: number, gid: number): void {
    // Docker creates a missing working directory. Resolve within the rootfs so a symlink in the image
    // cannot point the mkdir at the host.
    const parts = cwd.split('/').filter(Boolean);
    let current = rootfs;
    for (const part of parts) {
      if (part === '..') return;
      const next = path.join(current, part);
      let st: fs.Stats | null = null;
      try {
        st = fs.lstatSync(next);
      } catch {
        st = null;
      }
      if (st === null) {
        fs.mkdirSync(next, { mode: 0o755 });
        fs.chownSync(next, uid, gid);
      } else if (!st.isDirectory()) return; // a symlink or file: let the runtime report it
      current = next;
    }
  }

  private writeEtcFiles(record: ContainerRecord, dir: string): OciMount[] {
    const hostname = record.config.Hostname ?? record.id.slice(0, 12);
    const hostnamePath = path.join(dir, 'hostname');
    const hostsPath = path.join(dir, 'hosts');
    const resolvPath = path.join(dir, 'resolv.conf');
    fs.writeFileSync(hostnamePath, `${hostname}\n`);
    const extra = (record.hostConfig.ExtraHosts ?? [])
      .map((h) => {
        const i = h.lastIndexOf(':');
        return i > 0 ? `${h.slice(i + 1)}\t${h.slice(0, i)}\n` : '';
      })
      .join('');
    fs.writeFileSync(
      hostsPath,
      `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n${extra}`,
    );
    if (!fs.existsSync(resolvPath)) {
      let resolv = '';
      try {
        resolv = fs
          .readFileSync('/etc/resolv.conf', 'utf8')
          .split('\n')
          .filter((l) => !/^\s*nameserver\s+(127\.|::1)/.test(l))
          .join('\n');
      } catch {
        resolv = '';
      }
      const dns = record.hostConfig.Dns ?? [];
      if (dns.length > 0) resolv = `${dns.map((d) => `nameserver ${d}`).join('\n')}\n`;
      fs.writeFileSync(resolvPath, resolv);
    }
    const ro = record.hostConfig.ReadonlyRootfs ? ['ro'] : [];
    return [
      {
        destination: '/etc/resolv.conf',
        type: 'bind',
        source: resolvPath,
        options: ['rbind', 'rprivate', ...ro],
      },
      {
        destination: '/etc/hostname',
        type: 'bind',
        source: hostnamePath,
        options: ['rbind', 'rprivate', ...ro],
      },
      { destination: '/etc/hosts', type: 'bind', source: hostsPath, options: ['rbind', 'rprivate', ...ro] },
    ];
  }

  // ---------------------------------------------------------------------------------------------
  // exit handling

  /** Watches conmon's exit directory: `<exitDir>/<id>` appears (atomically) when a container exits. */
  watchExits(): void {
    this.watcher = fs.watch(this.exitDir, (_type, filename) => {
      if (!filename || !/^[a-f0-9]{64}$/.test(filename)) return;
      const record = this.records.get(filename);
      if (TRACE_ENABLED) traceExitSeen(this.exitDir, filename);
      if (record && this.isRunning(record)) void this.handleExit(filename);
    });
  }

  stopWatching(): void {
    this.watcher?.close();
    this.watcher = null;
    for (const hub of this.hubs.values()) hub.close();
  }

  /** Records a container's exit (from its exit file), runs auto-remove and wakes waiters. */
  async handleExit(id: string): Promise<void> {
    if (this.exiting.has(id)) return;
    const pendingStart = this.starting.get(id);
    if (pendingStart) {
      // the start path will notice the exit file itself once the record says "running"
      return;
    }
    const record = this.records.get(id);
    if (!record || !this.isRunning(record)) return;
    const exitFile = path.join(this.exitDir, id);
    let text: string;
    try {
      text = fs.readFileSync(exitFile, 'utf8').trim();
    } catch {
      return;
    }
    this.exiting.add(id);
    const span = trace.span('exit', id);
    try {
      const code = Number(text);
      const dir = this.containerDir(id);
      let finishedAt = new Date().toISOString();
      try {
        finishedAt = fs.statSync(exitFile).mtime.toISOString();
      } catch {
        // keep now
      }
      record.state = {
        ...record.state,
        status: 'exited',
        pid: 0,
        conmonPid: 0,
        exitCode: Number.isFinite(code) && code >= 0 ? code : 137,
        finishedAt,
        oomKilled: fs.existsSync(path.join(dir, 'persist', 'oom')),
      };
      span.mark('read');
      this.save(record);
      span.mark('db');
      // Runtime state, cgroups and the root file system go at once, on the thread pool, registered
      // before anything yields: a start that comes in meanwhile waits for them (doStart).
      let cleanup: Promise<void> | null = null;
      if (!record.hostConfig.AutoRemove) {
        fs.rmSync(exitFile, { force: true });
        const unmounting = this.opts.snapshotter
          .unmountContainerAsync(dir)
          .catch((err) => log.warn('unmount failed', { id, error: errorMessage(err) }))
          .then(() => span.mark('unmount'));
        this.unmounting.set(id, unmounting);
        const runtimeGone = this.deleteRuntimeState(record).then(() => span.mark('runtime-delete'));
        cleanup = Promise.all([unmounting, runtimeGone]).then(() => {
          if (this.unmounting.get(id) === unmounting) this.unmounting.delete(id);
        });
      }
      await this.extensions?.exited(record);
      span.mark('extensions');
      this.event(record, 'die', { exitCode: String(record.state.exitCode) });
      this.resolveWaiters(record, ['next-exit', 'not-running']);
      this.notifyStopped(id);
      span.mark('waiters');
      if (cleanup) await cleanup;
      else {
        // Let the answers to the waiters go out before the removal takes the event loop.
        await yieldToIo();
        await this.remove(id, { force: true, volumes: true }).catch((err) =>
          log.warn('auto-remove failed', { id, error: errorMessage(err) }),
        );
        span.mark('autoremove');
        return;
      }
    } finally {
      this.exiting.delete(id);
      span.end();
    }
    if (this.records.has(id)) this.extensions?.afterExit(record);
  }

  /** Calls `cb` when the container stops running (for `logs -f`). Returns an unsubscribe function. */
  onStopped(id: string, cb: () => void): () => void {
    let set = this.stopListeners.get(id);
    if (!set) {
      set = new Set();
      this.stopListeners.set(id, set);
    }
    set.add(cb);
    return () => set?.delete(cb);
  }

  private notifyStopped(id: string): void {
    const set = this.stopListeners.get(id);
    if (!set) return;
    this.stopListeners.delete(id);
    for (const cb of set) cb();
  }

  private hubFor(record: ContainerRecord): AttachHub {
    let hub = this.hubs.get(record.id);
    if (!hub) {
      hub = new AttachHub(
        this.containerDir(record.id),
        record.config.Tty ?? false,
        record.config.StdinOnce ?? false,
        record.config.OpenStdin ?? false,
      );
      this.hubs.set(record.id, hub);
    }
    return hub;
  }

  // ---------------------------------------------------------------------------------------------
  // wait

  /**
   * Registers a waiter synchronously (the CLI sends `start` on another connection right after) and
   * resolves when the condition holds. `signal` drops the waiter when the client goes away.
   */
  wait(
    ref: string,
    condition: WaitCondition,
    signal?: AbortSignal,
  ): Promise<{ StatusCode: number; Error: { Message: string } | null }> {
    const record = this.get(ref);
    if (condition === 'not-running' && !this.isRunning(record) && !this.starting.has(record.id)) {
      return Promise.resolve({ StatusCode: record.state.exitCode, Error: null });
    }
    return new Promise((resolve) => {
      const waiter: Waiter = { condition, resolve };
      const list = this.waiters.get(record.id) ?? [];
      list.push(waiter);
      this.waiters.set(record.id, list);
      signal?.addEventListener('abort', () => {
        const l = this.waiters.get(record.id);
        if (l)
          this.waiters.set(
            record.id,
            l.filter((w) => w !== waiter),
          );
      });
    });
  }

  private resolveWaiters(record: ContainerRecord, conditions: WaitCondition[]): void {
    const list = this.waiters.get(record.id);
    if (!list) return;
    const remaining: Waiter[] = [];
    for (const w of list) {
      if (conditions.includes(w.condition)) {
        w.resolve({ StatusCode: record.state.exitCode, Error: null });
      } else remaining.push(w);
    }
    if (remaining.length > 0) this.waiters.set(record.id, remaining);
    else this.waiters.delete(record.id);
  }

  // ---------------------------------------------------------------------------------------------
  // signals

  async kill(ref: string, signalName: string | null): Promise<void> {
    const record = this.get(ref);
    const signal = parseSignal(signalName, 9);
    this.extensions?.stopRequested(record);
    if (!this.isRunning(record)) {
      throw new Conflict(`Cannot kill container: ${ref}: Container ${record.id} is not running`);
    }
    await this.signal(record, signal);
  }

  private async signal(record: ContainerRecord, signal: number): Promise<void> {
    this.event(record, 'kill', { signal: String(signal) });
    try {
      await this.runtimeFor(record).kill(record.id, signal);
    } catch (err) {
      // The process may have exited between our check and the kill.
      if (!this.isRunning(record)) return;
      throw err;
    }
  }

  private waitForExit(record: ContainerRecord, timeoutMs: number): Promise<boolean> {
    if (!this.isRunning(record)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        unsubscribe();
        resolve(!this.isRunning(record));
      }, timeoutMs);
      const unsubscribe = this.onStopped(record.id, () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  async stop(ref: string, timeoutSeconds: number | null): Promise<void> {
    const record = this.get(ref);
    this.extensions?.stopRequested(record);
    if (!this.isRunning(record)) throw new NotModified();
    const timeout = timeoutSeconds ?? record.config.StopTimeout ?? 10;
    if (record.state.status === 'paused')
      await this.runtimeFor(record)
        .resume(record.id)
        .catch(() => undefined);
    const stopSignal = parseSignal(record.config.StopSignal ?? null, 15);
    if (timeout !== 0) {
      await this.signal(record, stopSignal);
      if (timeout < 0) await this.waitForExit(record, 2 ** 31 - 1);
      else if (await this.waitForExit(record, timeout * 1000)) {
        this.event(record, 'stop');
        return;
      }
    }
    if (this.isRunning(record)) {
      await this.signal(record, 9);
      await this.waitForExit(record, 30_000);
    }
    this.event(record, 'stop');
  }

  async restart(ref: string, timeoutSeconds: number | null): Promise<void> {
    const record = this.get(ref);
    if (this.isRunning(record)) await this.stop(record.id, timeoutSeconds);
    await this.waitUntilSettled(record.id);
    await this.start(record.id);
    this.event(record, 'restart');
  }

  /** Waits until exit bookkeeping (runtime delete, unmount) of a stopped container finished. */
  private async waitUntilSettled(id: string): Promise<void> {
    for (let i = 0; i < 200 && this.exiting.has(id); i++) await new Promise((r) => setTimeout(r, 10));
  }

  async pause(ref: string): Promise<void> {
    const record = this.get(ref);
    if (record.state.status === 'paused') throw new Conflict(`Container ${record.id} is already paused`);
    if (!this.isRunning(record)) throw new Conflict(`Container ${record.id} is not running`);
    await this.runtimeFor(record).pause(record.id);
    record.state.status = 'paused';
    this.save(record);
    this.event(record, 'pause');
  }

  async unpause(ref: string): Promise<void> {
    const record = this.get(ref);
    if (record.state.status !== 'paused') throw new Conflict(`Container ${record.id} is not paused`);
    await this.runtimeFor(record).resume(record.id);
    record.state.status = 'running';
    this.save(record);
    this.event(record, 'unpause');
  }

  // ---------------------------------------------------------------------------------------------
  // remove / rename

  async remove(ref: string, opts: { force: boolean; volumes: boolean }): Promise<void> {
    const record = this.get(ref);
    const span = trace.span('remove', record.id);
    if (this.isRunning(record) || this.starting.has(record.id)) {
      if (!opts.force) {
        throw new Conflict(
          `You cannot remove a ${record.state.status} container ${record.id}. Stop the container before attempting removal or force remove`,
        );
      }
      await this.starting.get(record.id)?.catch(() => undefined);
      if (this.isRunning(record)) {
        if (record.state.status === 'paused')
          await this.runtimeFor(record)
            .resume(record.id)
            .catch(() => undefined);
        await this.signal(record, 9).catch(() => undefined);
        if (!(await this.waitForExit(record, 15_000))) {
          // conmon gone: force the runtime state away
          await this.runtimeFor(record)
            .delete(record.id, true)
            .catch(() => undefined);
        }
      }
    }
    if (record.state.status === 'removing' && !this.exiting.has(record.id)) {
      throw new Conflict(`removal of container ${record.id} is already in progress`);
    }
    span.mark('stopped');
    record.state.status = 'removing';
    const dir = this.containerDir(record.id);
    // Database first for this direction: once the row is gone the container is gone for every
    // client; the directory left behind by a crash here is garbage that start-up sweeps.
    this.table.delete(record.id);
    span.mark('db');
    this.records.delete(record.id);
    this.names.delete(record.name);
    this.hubs.get(record.id)?.finishAfterDrain();
    this.hubs.delete(record.id);
    this.execs.dropContainer(record.id);
    this.event(record, 'destroy');
    this.resolveWaiters(record, ['removed', 'next-exit', 'not-running']);
    span.mark('event');
    // Let the answers to the waiters go out before the clean-up below takes the event loop.
    await yieldToIo();
    await this.cleanupFiles(record, dir, span);
    await this.extensions?.removed(record, opts);
    span.mark('extensions');
    this.opts.onContainerRemoved?.();
    span.mark('gc');
    span.end();
  }

  /**
   * Deletes the runtime's state of an exited container (its cgroups included), once: the exit handler
   * and a removal racing it share the work.
   */
  private deleteRuntimeState(record: ContainerRecord): Promise<void> {
    const pending = this.deletingRuntime.get(record.id);
    if (pending) return pending;
    const runtime = this.runtimeFor(record);
    if (!fs.existsSync(path.join(runtime.stateRoot, record.id))) return Promise.resolve();
    const work = runtime
      .deleteStopped(record.id)
      .catch((err) => log.warn('runtime delete failed', { id: record.id, error: errorMessage(err) }))
      .finally(() => this.deletingRuntime.delete(record.id));
    this.deletingRuntime.set(record.id, work);
    return work;
  }

  private async cleanupFiles(record: ContainerRecord, dir: string, span?: Span): Promise<void> {
    // After a normal exit the runtime state is already gone, or goes without spawning the runtime.
    const runtimeGone = this.deleteRuntimeState(record).then(() => span?.mark('runtime-delete'));
    // The root is unmounted on libuv's thread pool (an overlay's last unmount syncs the host file
    // system: the event loop stays free), then the directory (upper layer, logs) is renamed out of the
    // way and deleted in the background: the API answers without waiting for that. A crash before the
    // deletion ends leaves `.removed-<id>`, which start-up deletes like any directory without a record.
    await this.unmounting.get(record.id);
    let unmounted = true;
    try {
      await this.opts.snapshotter.unmountContainerAsync(dir);
    } catch (err) {
      unmounted = false;
      log.warn('unmounting a removed container failed', { id: record.id, error: errorMessage(err) });
    }
    span?.mark('unmount');
    await runtimeGone;
    if (unmounted) {
      const trash = path.join(this.containersDir, `.removed-${record.id}`);
      try {
        fs.renameSync(dir, trash);
        this.deleteInBackground(trash);
      } catch (err) {
        if (!isErrnoCode(err, 'ENOENT')) fs.rmSync(dir, { recursive: true, force: true });
      }
    }
    fs.rmSync(path.join(this.exitDir, record.id), { force: true });
    span?.mark('dir');
    for (const hierarchy of [
      'cpu',
      'cpuacct',
      'cpuset',
      'memory',
      'devices',
      'freezer',
      'blkio',
      'pids',
      'hugetlb',
      'systemd',
      'unified',
    ]) {
      try {
        fs.rmdirSync(`/sys/fs/cgroup/${hierarchy}/strata/${record.id}`);
      } catch {
        // absent or already removed by the runtime
      }
    }
  }

  /** Deletes a removed (and unmounted) container's directory, one at a time, off the event loop. */
  private deleteInBackground(dir: string): void {
    this.trash = this.trash.then(async () => {
      try {
        await fs.promises.rm(dir, { recursive: true, force: true });
      } catch (err) {
        log.warn('deleting a removed container failed', { dir, error: errorMessage(err) });
      }
    });
  }

  /** Resolves once removed containers' directories are gone (tests, shutdown). */
  removalsSettled(): Promise<void> {
    return this.trash;
  }

  rename(ref: string, newName: string): void {
    const record = this.get(ref);
    const name = validateContainerName(newName);
    if (name === record.name)
      throw new Conflict(`Renaming a container with the same name as its current name`);
    const existing = this.names.get(name);
    if (existing) {
      throw new Conflict(
        `Conflict. The container name "/${name}" is already in use by container "${existing}". You have to remove (or rename) that container to be able to reuse that name.`,
      );
    }
    const oldName = record.name;
    record.name = name;
    this.save(record);
    this.names.delete(oldName);
    this.names.set(name, record.id);
    this.event(record, 'rename', { oldName: `/${oldName}` });
  }

  resize(ref: string, rows: number, cols: number): void {
    const record = this.get(ref);
    if (!this.isRunning(record)) throw new Conflict(`Container ${record.id} is not running`);
    resizeTerminal(this.containerDir(record.id), rows, cols);
  }

  // ---------------------------------------------------------------------------------------------
  // attach

  /**
   * Attaches a hijacked client. Before start, the client is registered and connected when the
   * container starts; for a running container the attach socket is connected now. A stopped container
   * ends the stream at once (after optional logs).
   */
  async attach(
    ref: string,
    client: { socket: Duplex; stdin: boolean; stdout: boolean; stderr: boolean },
    initialInput: Buffer,
  ): Promise<void> {
    const record = this.get(ref);
    const hub = this.hubFor(record);
    hub.addClient(client, initialInput);
    this.event(record, 'attach');
    if (this.isRunning(record)) await hub.connect();
    else if (record.state.status === 'exited' && !this.starting.has(record.id)) {
      // Nothing will ever come; dockerd ends the stream at once for a stopped container.
      hub.finish();
      this.hubs.delete(record.id);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // processes

  top(ref: string, psArgs: string): Promise<{ Titles: string[]; Processes: string[][] }> {
    const record = this.get(ref);
    if (!this.isRunning(record)) throw new Conflict(`Container ${record.id} is not running`);
    const pids = new Set(cgroupPids(`/strata/${record.id}`));
    if (pids.size === 0 && record.state.pid > 0) pids.add(record.state.pid);
    const args = psArgs.trim() === '' ? ['-ef'] : psArgs.trim().split(/\s+/);
    return new Promise((resolve, reject) => {
      execFile('ps', args, { maxBuffer: 16 << 20 }, (err, stdout) => {
        if (err && !stdout) {
          reject(new SystemError(`Error running ps: ${err.message}`));
          return;
        }
        const lines = stdout.split('\n').filter((l) => l.trim() !== '');
        const header = lines.shift() ?? '';
        const titles = header.trim().split(/\s+/);
        const pidIndex = titles.indexOf('PID');
        if (pidIndex < 0) {
          reject(new InvalidArgument(`Couldn't find PID field in ps output`));
          return;
        }
        const processes: string[][] = [];
        for (const line of lines) {
          const fields = line.trim().split(/\s+/);
          if (!pids.has(Number(fields[pidIndex]))) continue;
          const row = fields.slice(0, titles.length - 1);
          row.push(fields.slice(titles.length - 1).join(' '));
          processes.push(row);
        }
        resolve({ Titles: titles, Processes: processes });
      });
    });
  }

  changes(ref: string): { Path: string; Kind: number }[] {
    const record = this.get(ref);
    return this.opts.snapshotter
      .containerChanges(this.containerDir(record.id), record.chainId)
      .map((c) => ({ Path: c.path, Kind: c.kind }));
  }

  // ---------------------------------------------------------------------------------------------
  // file system access (docker cp, export)

  private readonly tempMounts = new Map<string, number>();

  /**
   * Gives `fn` the container's merged root file system, mounting it for the duration when the
   * container is not running (docker cp works on created and stopped containers too). The mount is
   * released when the promise returned by `fn` settles.
   */
  async withRootfs<T>(ref: string, fn: (rootfs: string, record: ContainerRecord) => Promise<T>): Promise<T> {
    const record = this.get(ref);
    const dir = this.containerDir(record.id);
    const rootfs = path.join(dir, 'rootfs');
    await this.unmounting.get(record.id);
    const mountedByUs = !this.opts.snapshotter.isContainerMounted(dir);
    if (mountedByUs) this.opts.snapshotter.mountContainer(dir, record.chainId);
    this.tempMounts.set(record.id, (this.tempMounts.get(record.id) ?? 0) + 1);
    try {
      return await fn(rootfs, record);
    } finally {
      const left = (this.tempMounts.get(record.id) ?? 1) - 1;
      if (left <= 0) this.tempMounts.delete(record.id);
      else this.tempMounts.set(record.id, left);
      if (
        left <= 0 &&
        !this.isRunning(record) &&
        !this.starting.has(record.id) &&
        this.records.has(record.id)
      ) {
        try {
          this.opts.snapshotter.unmountContainer(dir);
        } catch (err) {
          log.warn('unmount after file access failed', { id: record.id, error: errorMessage(err) });
        }
      }
    }
  }

  // ---------------------------------------------------------------------------------------------
  // sizes and layers

  lowerDirsOf(record: ContainerRecord): string[] {
    return record.chainId ? this.opts.snapshotter.lowerDirs(record.chainId) : [];
  }

  sizeRw(record: ContainerRecord): number {
    return treeSize(path.join(this.containerDir(record.id), 'upper'));
  }

  /**
   * `SizeRw` (the container's own layer, walked now: a running container changes it at will) and
   * `SizeRootFs` (that plus its image's layers, whose sizes never change and are kept in memory).
   */
  sizes(record: ContainerRecord): { SizeRw: number; SizeRootFs: number } {
    const rw = this.sizeRw(record);
    return { SizeRw: rw, SizeRootFs: rw + (record.chainId ? this.chainSize(record.chainId) : 0) };
  }

  private chainSize(chainId: Digest): number {
    const known = this.chainSizes.get(chainId);
    if (known !== undefined) return known;
    let total = 0;
    let layer = this.opts.snapshotter.getLayer(chainId);
    if (!layer) return 0;
    while (layer) {
      total += layer.size;
      layer = layer.parentChainId ? this.opts.snapshotter.getLayer(layer.parentChainId) : null;
    }
    this.chainSizes.set(chainId, total);
    return total;
  }

  // ---------------------------------------------------------------------------------------------
  // recovery

  /**
   * After a daemon (re)start: for each container the database says is running, the exit file tells
   * whether it exited meanwhile; otherwise a live conmon means it still runs. Mounts and runtime
   * state of containers that are not running are cleaned, and directories without a record (a crash
   * during create or remove) are deleted.
   */
  async recover(): Promise<void> {
    for (const record of this.records.values()) {
      const dir = this.containerDir(record.id);
      if (record.state.status === 'removing') {
        this.table.delete(record.id);
        this.records.delete(record.id);
        this.names.delete(record.name);
        await this.cleanupFiles(record, dir);
        continue;
      }
      if (this.isRunning(record)) {
        if (fs.existsSync(path.join(this.exitDir, record.id))) {
          await this.handleExit(record.id);
          continue;
        }
        if (isConmonAlive(record.state.conmonPid, record.id)) {
          const state = await this.runtimeFor(record).state(record.id);
          if (state?.status === 'paused') record.state.status = 'paused';
          else if (state?.status === 'running') record.state.status = 'running';
          this.save(record);
          continue;
        }
        // conmon died (or the host rebooted): nobody will report an exit code.
        log.warn('container lost its monitor; marking it exited', { id: record.id });
        const runtime = this.runtimeFor(record);
        await runtime.kill(record.id, 9).catch(() => undefined);
        await runtime.delete(record.id, true).catch(() => undefined);
        record.state = {
          ...record.state,
          status: 'exited',
          pid: 0,
          conmonPid: 0,
          exitCode: 137,
          error: 'container monitor (conmon) died',
          finishedAt: new Date().toISOString(),
        };
        this.save(record);
      }
      if (!this.isRunning(record)) {
        // A crash in the middle of a start can leave a runtime container (and its conmon) behind for a
        // record that still says "created"; remove it so its late exit file cannot confuse a later start.
        const runtime = this.runtimeFor(record);
        if (fs.existsSync(path.join(runtime.stateRoot, record.id))) {
          await runtime.delete(record.id, true).catch(() => undefined);
          fs.rmSync(path.join(this.exitDir, record.id), { force: true });
        }
        try {
          if (this.opts.snapshotter.isContainerMounted(dir)) this.opts.snapshotter.unmountContainer(dir);
        } catch {
          // best effort
        }
        if (record.hostConfig.AutoRemove && record.state.status === 'exited') {
          await this.remove(record.id, { force: true, volumes: true }).catch(() => undefined);
        }
      }
    }
    for (const entry of fs.readdirSync(this.containersDir)) {
      if (!this.records.has(entry)) {
        const dir = path.join(this.containersDir, entry);
        try {
          if (this.opts.snapshotter.isContainerMounted(dir)) this.opts.snapshotter.unmountContainer(dir);
        } catch {
          // best effort
        }
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
    for (const entry of fs.readdirSync(this.exitDir)) {
      if (!this.records.has(entry)) fs.rmSync(path.join(this.exitDir, entry), { force: true });
    }
  }
}

function isConmonAlive(pid: number, containerId: string): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes('conmon') && cmdline.includes(containerId);
  } catch {
    return false;
  }
}

/** dockerd's start-failure wording, so the docker CLI maps it to exit codes 126/127. */
export function startErrorMessage(raw: string): string {
  const text = raw.trim();
  const notFound = /executable file [`'"]?([^`'"]*)[`'"]? not found in \$PATH/i.exec(text);
  if (notFound) {
    return `failed to create shim task: OCI runtime create failed: exec: "${notFound[1]}": executable file not found in $PATH: unknown`;
  }
  if (/no such file or directory/i.test(text)) {
    return `failed to create shim task: OCI runtime create failed: ${text.replace(/No such file or directory/g, 'no such file or directory')}: unknown`;
  }
  if (/permission denied|is a directory/i.test(text)) {
    return `failed to create shim task: OCI runtime create failed: ${text.replace(/Permission denied/g, 'permission denied').replace(/Is a directory/g, 'is a directory')}: unknown`;
  }
  return text;
}

function startErrorExitCode(message: string): number {
  if (/executable file not found|no such file or directory/.test(message)) return 127;
  if (/permission denied|is a directory/.test(message)) return 126;
  return 128;
}

/** Cgroup resources from HostConfig in OCI form (only what is set). */
export function resourcesFromHostConfig(host: ContainerRecord['hostConfig']): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const memory: Record<string, number> = {};
  if (host.Memory && host.Memory > 0) memory.limit = host.Memory;
  if (host.MemoryReservation && host.MemoryReservation > 0) memory.reservation = host.MemoryReservation;
  if (host.MemorySwap && host.MemorySwap !== 0) memory.swap = host.MemorySwap;
  if (Object.keys(memory).length > 0)
    out.memory = { ...memory, ...(host.OomKillDisable ? { disableOOMKiller: true } : {}) };
  const cpu: Record<string, number | string> = {};
  if (host.CpuShares && host.CpuShares > 0) cpu.shares = host.CpuShares;
  if (host.NanoCpus && host.NanoCpus > 0) {
    cpu.period = 100000;
    cpu.quota = Math.round((host.NanoCpus / 1e9) * 100000);
  }
  if (host.CpuPeriod && host.CpuPeriod > 0) cpu.period = host.CpuPeriod;
  if (host.CpuQuota && host.CpuQuota > 0) cpu.quota = host.CpuQuota;
  if (host.CpusetCpus) cpu.cpus = host.CpusetCpus;
  if (Object.keys(cpu).length > 0) out.cpu = cpu;
  if (host.PidsLimit && host.PidsLimit > 0) out.pids = { limit: host.PidsLimit };
  return out;
}

export function writeJsonAtomic(file: string, value: unknown): void {
  writeFileAtomicSync(file, JSON.stringify(value));
}

/** The moment conmon's exit file is seen, next to the time conmon wrote it (its mtime). */
function traceExitSeen(exitDir: string, id: string): void {
  let written = '';
  try {
    const st = fs.statSync(path.join(exitDir, id));
    written = ` written=${st.mtimeMs.toFixed(3)}`;
  } catch {
    // already consumed
  }
  trace.point('exit-seen', id, written.trim());
}

/** Resolves after pending I/O callbacks (e.g. writes of answers just resolved) have had their turn. */
function yieldToIo(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
