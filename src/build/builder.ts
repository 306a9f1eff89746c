import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as posixPath from 'node:path/posix';
import type { Duplex } from 'node:stream';
import { type Digest, shortId } from '../common/digest.js';
import { errorMessage, InvalidArgument, NotFound, StrataError } from '../common/errors.js';
import { logger } from '../common/log.js';
import { parseSignal } from '../containers/config.js';
import type { CreateBody } from '../containers/types.js';
import { type ContainerConfig, hostArchitecture, parsePortSpec } from '../images/config.js';
import type { ContainerDiffSource, CreateImageOptions, ImageRecord } from '../images/service.js';
import { resolveUser } from '../runtime/user.js';
import { extractArchiveToRoot } from '../snapshots/archive.js';
import type { Snapshotter } from '../snapshots/snapshotter.js';
import { runtimeArtifacts } from './artifacts.js';
import type { BuildCache } from './cache.js';
import type { BuildContext } from './context.js';
import { bufferSource, type Identity, RootWriter, type WriteOptions } from './copy.js';
import { BuildCancelledError, BuildStepError, DockerfileParseError, RunFailedError } from './errors.js';
import {
  type ArgCommand,
  type Command,
  type CopyCommand,
  type Dockerfile,
  type FromCommand,
  type KeyValueCommand,
  parseTrigger,
  type RunCommand,
  type Stage,
} from './instructions.js';
import { LayerPlan, LowerView } from './layer-plan.js';
import { RunOutputSink } from './run-output.js';
import { LexError, ShellLex } from './shell-lex.js';
import {
  downloadSource,
  type ResolvedSource,
  resolveContextSources,
  resolveRootSources,
  SourceError,
} from './sources.js';

const log = logger('build');

/** What the builder needs from the image part. */
export interface BuildImages {
  resolve(ref: string): ImageRecord;
  findById(id: Digest): ImageRecord | null;
  createImage(options: CreateImageOptions): Promise<Digest>;
  tag(ref: string, repo: string, tag?: string): string;
}

/** What the builder needs from the container part: RUN steps are ordinary containers. */
export interface BuildContainers {
  create(body: CreateBody, name: string | null): { Id: string };
  start(ref: string): Promise<void>;
  wait(
    ref: string,
    condition: 'next-exit',
    signal?: AbortSignal,
  ): Promise<{ StatusCode: number; Error: { Message: string } | null }>;
  attach(
    ref: string,
    client: { socket: Duplex; stdin: boolean; stdout: boolean; stderr: boolean },
    initialInput: Buffer,
  ): Promise<void>;
  remove(ref: string, opts: { force: boolean; volumes: boolean }): Promise<void>;
  containerDir(id: string): string;
}

export type NetworkMode = 'none' | 'host' | 'default';

export interface BuildOptions {
  /** Path of the Dockerfile inside the context. */
  dockerfile: string;
  tags: string[];
  /** `--build-arg`; a null value means "declared by the client without a value". */
  buildArgs: Map<string, string | null>;
  labels: Record<string, string>;
  noCache: boolean;
  pull: boolean;
  quiet: boolean;
  /** Remove intermediate containers after a successful step (`rm`, default true). */
  removeIntermediate: boolean;
  target: string | null;
  platform: string | null;
  networkMode: NetworkMode;
  /**
   * Registry credentials by registry (`X-Registry-Config`: `"127.0.0.1:5000"`,
   * `"https://index.docker.io/v1/"`), for pulls of FROM images.
   */
  registryAuth: Record<string, RegistryCredentialsLike>;
}

/** Credentials as the distribution part takes them (kept structural: the builder only passes them on). */
export interface RegistryCredentialsLike {
  username?: string;
  password?: string;
  identityToken?: string;
  registryToken?: string;
}

export interface BuildOutput {
  /** Text for the client (`{"stream": …}`). */
  stream(text: string): void;
  /** A progress message passed on as is (`{"status": …}` of a FROM pull). */
  progress(message: Record<string, unknown>): void;
  /** The resulting image id (`{"aux": {"ID": …}}`). */
  aux(id: Digest): void;
}

/** Pulls an image reference into the local store (FROM of an image that is not here, `--pull`). */
export type PullImage = (
  ref: string,
  platform: string | null,
  progress: (message: Record<string, unknown>) => void,
  signal: AbortSignal,
) => Promise<void>;

export interface BuilderDeps {
  images: BuildImages;
  containers: BuildContainers;
  snapshotter: Snapshotter;
  cache: BuildCache;
  /** Absent when the daemon has no registry client: FROM then needs the image locally. */
  pull?: PullImage;
}

const DEFAULT_SHELL = ['/bin/sh', '-c'];
/** Build args every build knows without an ARG line; they never show in the image history. */
const PROXY_ARGS = new Set([
  'HTTP_PROXY',
  'http_proxy',
  'HTTPS_PROXY',
  'https_proxy',
  'FTP_PROXY',
  'ftp_proxy',
  'NO_PROXY',
  'no_proxy',
  'ALL_PROXY',
  'all_proxy',
]);
const SOURCE_DATE_EPOCH = 'SOURCE_DATE_EPOCH';

interface StageState {
  image: ImageRecord | null;
  config: ContainerConfig;
  author: string | undefined;
  /** ARGs declared in this stage → their value (undefined: declared without one). */
  args: Map<string, string | undefined>;
  /** A CMD was given in this stage (a later ENTRYPOINT then keeps it). */
  cmdSet: boolean;
}

interface StepResult {
  /** The layer of a file-changing step (null: the step only changed the config). */
  layer: CreateImageOptions['layers'][number] | null;
  cleanup?: () => Promise<void> | void;
}

/** Host platform in OCI terms (`linux/amd64`). */
function hostPlatform(): { os: string; architecture: string } {
  return { os: 'linux', architecture: hostArchitecture() };
}

const ARCH_ALIASES: Record<string, string> = { x86_64: 'amd64', x86: '386', aarch64: 'arm64', armhf: 'arm' };

/** Checks a `--platform`: only this host's os/architecture can run here (no emulation). */
export function checkPlatform(spec: string): void {
  const [os, arch] = spec.toLowerCase().split('/');
  const host = hostPlatform();
  const architecture = arch === undefined || arch === '' ? host.architecture : (ARCH_ALIASES[arch] ?? arch);
  if (os !== host.os || architecture !== host.architecture) {
    throw new InvalidArgument(
      `platform ${JSON.stringify(spec)} is not supported: this host builds ${host.os}/${host.architecture} only (Strata does not emulate other platforms)`,
    );
  }
}

function envMap(env: readonly string[] | null | undefined): Map<string, string> {
  const map = new Map<string, string>();
  for (const entry of env ?? []) {
    const eq = entry.indexOf('=');
    if (eq > 0) map.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return map;
}

function setEnv(config: ContainerConfig, key: string, value: string): void {
  const list = [...(config.Env ?? [])];
  const index = list.findIndex((e) => e.slice(0, e.indexOf('=')) === key);
  if (index === -1) list.push(`${key}=${value}`);
  else list[index] = `${key}=${value}`;
  config.Env = list;
}

/** Go's `%q` of a string slice, as dockerd writes CMD/ENTRYPOINT into the history. */
function goQuotedList(list: readonly string[]): string {
  return `[${list.map((s) => JSON.stringify(s)).join(' ')}]`;
}

/** Go's `time.Duration.String()` for whole milliseconds and above. */
function goDuration(ns: number | undefined): string {
  if (!ns) return '0s';
  let rest = ns / 1e9;
  if (rest < 1) return `${ns / 1e6}ms`;
  const hours = Math.floor(rest / 3600);
  rest -= hours * 3600;
  const minutes = Math.floor(rest / 60);
  rest -= minutes * 60;
  const seconds = Number(rest.toFixed(9)).toString();
  return `${hours ? `${hours}h` : ''}${hours || minutes ? `${minutes}m` : ''}${seconds}s`;
}

function stepKey(parts: unknown[]): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex');
}

/** `--chmod=0755`: octal permission bits. */
function parseChmod(value: string, instruction: string): number {
  if (!/^[0-7]{1,4}$/.test(value)) {
    throw new SourceError(
      `${instruction} failed: invalid chmod parameter ${JSON.stringify(value)}: only octal modes are supported`,
    );
  }
  return Number.parseInt(value, 8);
}

/**
 * One build: the Dockerfile's stages, up to the target, step by step.
 *
 * Each step yields a new image whose parent is the previous step's (so `docker history` shows every
 * instruction): metadata instructions change only the config, RUN runs a real container on the
 * previous image and turns its upper dir into a layer, COPY/ADD/WORKDIR write into an overlay of
 * the previous image in a private directory and do the same. Before doing the work a step looks up
 * its cache key; a hit reuses the stored image and runs nothing.
 */
export class Build {
  private readonly lex: ShellLex;
  private readonly epoch: number | null;
  private readonly usedArgs = new Set<string>();
  private readonly stageResults = new Map<number, ImageRecord | null>();
  private readonly metaArgs = new Map<string, string | undefined>();
  private readonly platformArgs: Map<string, string>;
  private step = 0;
  private totalSteps = 0;

  constructor(
    private readonly deps: BuilderDeps,
    private readonly dockerfile: Dockerfile,
    private readonly context: BuildContext,
    private readonly options: BuildOptions,
    private readonly output: BuildOutput,
    private readonly workDir: string,
    private readonly signal: AbortSignal,
  ) {
    this.lex = new ShellLex(dockerfile.escapeToken);
    const epochText = options.buildArgs.get(SOURCE_DATE_EPOCH);
    if (epochText !== undefined && epochText !== null && epochText !== '') {
      if (!/^\d+$/.test(epochText))
        throw new InvalidArgument(`invalid SOURCE_DATE_EPOCH: ${JSON.stringify(epochText)}`);
      this.epoch = Number(epochText);
    } else this.epoch = null;
    const host = hostPlatform();
    const platform = options.platform ?? `${host.os}/${host.architecture}`;
    const [targetOs, targetArch, targetVariant] = platform.split('/');
    this.platformArgs = new Map([
      ['BUILDPLATFORM', `${host.os}/${host.architecture}`],
      ['BUILDOS', host.os],
      ['BUILDARCH', host.architecture],
      ['BUILDVARIANT', ''],
      ['TARGETPLATFORM', platform],
      ['TARGETOS', targetOs],
      ['TARGETARCH', targetArch ?? host.architecture],
      ['TARGETVARIANT', targetVariant ?? ''],
    ]);
  }

  private out(text: string): void {
    this.output.stream(text);
  }

  private checkCancelled(): void {
    if (this.signal.aborted) throw new BuildCancelledError();
  }

  private createdTime(): string {
    if (this.epoch === null) return new Date().toISOString();
    return new Date(this.epoch * 1000).toISOString().replace('.000Z', 'Z');
  }

  /** Runs the build; returns the final image id (tagged as requested). */
  async run(): Promise<Digest> {
    const stages = this.selectStages();
    if (Object.keys(this.options.labels).length > 0) {
      const labels = Object.entries(this.options.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      const last = stages[stages.length - 1];
      const label: KeyValueCommand = {
        kind: 'LABEL',
        line: last.commands.at(-1)?.line ?? last.from.line,
        original: `LABEL ${labels.map(([k, v]) => `${JSON.stringify(k)}='${v}'`).join(' ')}`,
        pairs: labels,
        literal: true,
      };
      stages[stages.length - 1] = { ...last, commands: [...last.commands, label] };
    }
    this.totalSteps =
      this.dockerfile.metaArgs.length + stages.reduce((sum, s) => sum + 1 + s.commands.length, 0);
    for (const warning of this.dockerfile.warnings) this.out(`${warning}\n`);

    for (const arg of this.dockerfile.metaArgs) {
      this.printStep(arg.original);
      await this.wrapErrors(arg.line, () => {
        const env = this.metaEnv();
        for (const { name, defaultValue } of arg.args) {
          const expandedName = this.lex.processWord(name, env);
          this.usedArgs.add(expandedName);
          const given = this.options.buildArgs.get(expandedName);
          const value =
            given !== undefined && given !== null
              ? given
              : defaultValue !== null
                ? this.lex.processWord(defaultValue, env)
                : undefined;
          this.metaArgs.set(expandedName, value);
          if (value !== undefined) env.set(expandedName, value);
        }
      });
    }

    let final: ImageRecord | null = null;
    for (const stage of stages) {
      final = await this.buildStage(stage);
      this.stageResults.set(stage.index, final);
    }
    if (final === null) throw new InvalidArgument('No image was generated. Is your Dockerfile empty?');

    const unused = [...this.options.buildArgs.keys()]
      .filter((k) => !this.usedArgs.has(k) && !PROXY_ARGS.has(k) && k !== SOURCE_DATE_EPOCH)
      .sort();
    if (unused.length > 0)
      this.out(`[Warning] One or more build-args [${unused.join(' ')}] were not consumed\n`);
    this.output.aux(final.id);
    this.out(`Successfully built ${shortId(final.id)}\n`);
    for (const tag of this.options.tags) {
      const name = this.deps.images.tag(final.id, tag);
      this.out(`Successfully tagged ${name}\n`);
    }
    return final.id;
  }

  private selectStages(): Stage[] {
    const stages = this.dockerfile.stages;
    if (this.options.target === null || this.options.target === '') return stages;
    const target = this.options.target.toLowerCase();
    const index = stages.findIndex((s) => s.name === target);
    if (index === -1)
      throw new InvalidArgument(`failed to reach build target ${this.options.target} in Dockerfile`);
    return stages.slice(0, index + 1);
  }

  private printStep(original: string): void {
    this.step++;
    this.out(`Step ${this.step}/${this.totalSteps} : ${original}`);
    this.out('\n');
  }

  private metaEnv(): Map<string, string> {
    const env = new Map(this.platformArgs);
    for (const [k, v] of this.metaArgs) if (v !== undefined) env.set(k, v);
    return env;
  }

  /** Variables a step sees: its stage's ARG values, overridden by ENV. */
  private stepEnv(state: StageState): Map<string, string> {
    const env = new Map<string, string>();
    for (const [k, v] of state.args) if (v !== undefined) env.set(k, v);
    for (const [k, v] of envMap(state.config.Env)) env.set(k, v);
    return env;
  }

  /** Turns any failure of a step into an error naming its line. */
  private async wrapErrors<T>(line: number, fn: () => T | Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (
        err instanceof RunFailedError ||
        err instanceof BuildCancelledError ||
        err instanceof BuildStepError ||
        err instanceof DockerfileParseError
      ) {
        throw err;
      }
      if (this.signal.aborted) throw new BuildCancelledError();
      const status = err instanceof StrataError && err.status < 500 ? 400 : 500;
      if (!(err instanceof StrataError) && !(err instanceof SourceError) && !(err instanceof LexError)) {
        log.warn('build step failed', { line, error: errorMessage(err), stack: (err as Error).stack ?? '' });
      }
      throw new BuildStepError(line, errorMessage(err), status);
    }
  }

  private async buildStage(stage: Stage): Promise<ImageRecord | null> {
    this.checkCancelled();
    this.printStep(stage.from.original);
    const state = await this.wrapErrors(stage.from.line, () => this.from(stage.from));
    const triggers = state.image?.config.config?.OnBuild ?? [];
    if (triggers.length > 0) {
      state.config.OnBuild = null;
      this.out(`# Executing ${triggers.length} build trigger${triggers.length === 1 ? '' : 's'}\n`);
      for (const [i, trigger] of triggers.entries()) {
        this.checkCancelled();
        const command = await this.wrapErrors(stage.from.line, () => {
          try {
            return parseTrigger(trigger, stage.from.line);
          } catch (err) {
            throw new InvalidArgument(`ONBUILD trigger ${i + 1} of the base image: ${errorMessage(err)}`);
          }
        });
        await this.wrapErrors(stage.from.line, () => this.dispatch(state, command, stage));
      }
    }
    this.out(` ---> ${state.image ? shortId(state.image.id) : ''}\n`);
    for (const command of stage.commands) {
      this.checkCancelled();
      this.printStep(command.original);
      const started = performance.now();
      await this.wrapErrors(command.line, () => this.dispatch(state, command, stage));
      log.debug('step done', {
        line: command.line,
        kind: command.kind,
        ms: Math.round(performance.now() - started),
      });
      this.out(` ---> ${state.image ? shortId(state.image.id) : ''}\n`);
    }
    return state.image;
  }

  private async from(command: FromCommand): Promise<StageState> {
    const env = this.metaEnv();
    if (command.platform !== null) checkPlatform(this.lex.processWord(command.platform, env));
    const ref = this.lex.processWord(command.image, env);
    if (ref === '') throw new InvalidArgument('FROM requires an image name (the ARG in it is empty)');
    let image: ImageRecord | null;
    const stage = this.dockerfile.stages.find(
      (s) => s.name === ref.toLowerCase() && s.index < (this.currentStageIndex(command) ?? 0),
    );
    if (stage) image = this.stageResults.get(stage.index) ?? null;
    else if (ref.toLowerCase() === 'scratch') image = null;
    else
      image = await this.baseImage(
        ref,
        command.platform === null ? null : this.lex.processWord(command.platform, env),
      );
    return {
      image,
      config: structuredClone(image?.config.config ?? {}),
      author: image?.config.author,
      args: new Map(),
      cmdSet: false,
    };
  }

  /** A FROM image: local, or pulled when missing (or always with `--pull`) if a registry client exists. */
  private async baseImage(ref: string, platform: string | null): Promise<ImageRecord> {
    const local = (): ImageRecord | null => {
      try {
        return this.deps.images.resolve(ref);
      } catch (err) {
        if (err instanceof NotFound) return null;
        throw err;
      }
    };
    let image = this.options.pull ? null : local();
    if (image === null && this.deps.pull && !/^(sha256:)?[a-f0-9]{12,64}$/.test(ref)) {
      try {
        await this.deps.pull(
          ref,
          platform ?? this.options.platform,
          (m) => this.output.progress(m),
          this.signal,
        );
      } catch (err) {
        if (this.signal.aborted) throw new BuildCancelledError();
        const status = err instanceof StrataError ? err.status : 500;
        throw new StrataError(status, 'PULL_FAILED', `FROM ${ref}: ${errorMessage(err)}`);
      }
      image = local();
    }
    image ??= local();
    if (image === null) {
      throw new NotFound(
        `FROM ${ref}: No such image: ${ref}${this.deps.pull ? '' : ' (the image must be present locally: docker pull or load it first)'}`,
      );
    }
    return image;
  }

  private currentStageIndex(command: FromCommand): number | null {
    return this.dockerfile.stages.find((s) => s.from === command)?.index ?? null;
  }

  private async dispatch(state: StageState, command: Command, stage: Stage): Promise<void> {
    switch (command.kind) {
      case 'RUN':
        return this.run_(state, command);
      case 'COPY':
      case 'ADD':
        return this.copy(state, command, stage);
      case 'WORKDIR':
        return this.workdir(state, command.value);
      case 'ARG':
        return this.arg(state, command);
      case 'FROM':
        throw new InvalidArgument('FROM is not allowed here');
      default:
        return this.metadata(state, command);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Committing a step

  /** The image a step's cache key names, if the cache has it and it still exists. */
  private probeCache(key: string): ImageRecord | null {
    if (this.options.noCache) return null;
    const id = this.deps.cache.get(key);
    if (id === null) return null;
    try {
      return this.deps.images.resolve(id);
    } catch {
      this.deps.cache.remove(key);
      return null;
    }
  }

  private useCached(state: StageState, image: ImageRecord): void {
    this.out(' ---> Using cache\n');
    state.image = image;
    state.config = structuredClone(image.config.config ?? {});
  }

  private async commit(state: StageState, key: string, createdBy: string, result: StepResult): Promise<void> {
    const created = this.createdTime();
    try {
      const config: ContainerConfig = { ...state.config, Image: state.image?.id ?? '' };
      const id = await this.deps.images.createImage({
        parent: state.image,
        layers: result.layer ? [result.layer] : [],
        config,
        history: [{ created, created_by: createdBy, ...(result.layer ? {} : { empty_layer: true }) }],
        author: state.author,
        created,
      });
      const image = this.deps.images.findById(id);
      if (!image) throw new NotFound(`image ${id} vanished`);
      this.deps.cache.put(key, id);
      state.image = image;
      state.config = structuredClone(image.config.config ?? {});
    } finally {
      await result.cleanup?.();
    }
  }

  /** A metadata step: a new image with the changed config and no layer. */
  private async commitConfig(state: StageState, description: string, apply: () => void): Promise<void> {
    const shell = state.config.Shell?.length ? state.config.Shell : DEFAULT_SHELL;
    const createdBy = `${shell.join(' ')} #(nop)  ${description}`;
    apply();
    const key = stepKey([
      this.epoch,
      state.image?.id ?? 'scratch',
      createdBy,
      state.config,
      state.author ?? '',
    ]);
    const cached = this.probeCache(key);
    if (cached) {
      this.useCached(state, cached);
      return;
    }
    await this.commit(state, key, createdBy, { layer: null });
  }

  // -------------------------------------------------------------------------------------------
  // Metadata instructions

  private async metadata(state: StageState, command: Command): Promise<void> {
    const env = this.stepEnv(state);
    const word = (text: string) => this.lex.processWord(text, env);
    const shellOf = () => (state.config.Shell?.length ? state.config.Shell : DEFAULT_SHELL);
    switch (command.kind) {
      case 'ENV': {
        const pairs = command.pairs.map(([k, v]) => [word(k), word(v)] as const);
        return this.commitConfig(state, `ENV ${pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`, () => {
          for (const [k, v] of pairs) setEnv(state.config, k, v);
        });
      }
      case 'LABEL': {
        const pairs = command.literal
          ? command.pairs
          : command.pairs.map(([k, v]) => [word(k), word(v)] as const);
        return this.commitConfig(state, `LABEL ${pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`, () => {
          state.config.Labels = { ...(state.config.Labels ?? {}) };
          for (const [k, v] of pairs) state.config.Labels[k] = v;
        });
      }
      case 'CMD': {
        const cmd = command.exec ?? [...shellOf(), command.shell];
        return this.commitConfig(state, `CMD ${goQuotedList(cmd)}`, () => {
          state.config.Cmd = cmd;
          state.cmdSet = true;
        });
      }
      case 'ENTRYPOINT': {
        const entrypoint = command.exec ?? [...shellOf(), command.shell];
        return this.commitConfig(state, `ENTRYPOINT ${goQuotedList(entrypoint)}`, () => {
          state.config.Entrypoint = entrypoint;
          if (!state.cmdSet) state.config.Cmd = null;
        });
      }
      case 'EXPOSE': {
        const words = command.words.flatMap((w) => this.lex.processWords(w, env));
        const ports = words.flatMap((w) => parsePortSpec(w));
        return this.commitConfig(state, `EXPOSE ${words.join(' ')}`, () => {
          state.config.ExposedPorts = { ...(state.config.ExposedPorts ?? {}) };
          for (const port of ports) state.config.ExposedPorts[port] = {};
        });
      }
      case 'VOLUME': {
        const volumes = command.words.map((w) => word(w));
        for (const v of volumes) {
          if (v.trim() === '') throw new InvalidArgument('VOLUME specified can not be an empty string');
        }
        return this.commitConfig(state, `VOLUME [${volumes.join(' ')}]`, () => {
          state.config.Volumes = { ...(state.config.Volumes ?? {}) };
          for (const v of volumes) state.config.Volumes[v] = {};
        });
      }
      case 'USER': {
        const user = word(command.value);
        return this.commitConfig(state, `USER ${user}`, () => {
          state.config.User = user;
        });
      }
      case 'STOPSIGNAL': {
        const signal = word(command.value);
        parseSignal(signal, 15);
        return this.commitConfig(state, `STOPSIGNAL ${signal}`, () => {
          state.config.StopSignal = signal;
        });
      }
      case 'MAINTAINER': {
        const maintainer = word(command.value);
        return this.commitConfig(state, `MAINTAINER ${maintainer}`, () => {
          state.author = maintainer;
        });
      }
      case 'HEALTHCHECK': {
        const health: NonNullable<ContainerConfig['Healthcheck']> = { Test: command.test };
        if (command.interval !== undefined) health.Interval = command.interval;
        if (command.timeout !== undefined) health.Timeout = command.timeout;
        if (command.startPeriod !== undefined) health.StartPeriod = command.startPeriod;
        if (command.startInterval !== undefined) health.StartInterval = command.startInterval;
        if (command.retries !== undefined) health.Retries = command.retries;
        const description =
          command.test[0] === 'NONE'
            ? 'HEALTHCHECK NONE'
            : `HEALTHCHECK &{${goQuotedList(command.test)} "${goDuration(command.interval)}" "${goDuration(command.timeout)}" "${goDuration(command.startPeriod)}" "${goDuration(command.startInterval)}" '\\x${(command.retries ?? 0).toString(16).padStart(2, '0')}'}`;
        return this.commitConfig(state, description, () => {
          state.config.Healthcheck = health;
        });
      }
      case 'SHELL':
        return this.commitConfig(state, `SHELL [${command.shell.join(' ')}]`, () => {
          state.config.Shell = command.shell;
        });
      case 'ONBUILD':
        return this.commitConfig(state, `ONBUILD ${command.trigger}`, () => {
          state.config.OnBuild = [...(state.config.OnBuild ?? []), command.trigger];
        });
      default:
        throw new InvalidArgument(`unexpected instruction ${command.kind}`);
    }
  }

  private async arg(state: StageState, command: ArgCommand): Promise<void> {
    const env = this.stepEnv(state);
    const parts: string[] = [];
    for (const { name, defaultValue } of command.args) {
      const key = this.lex.processWord(name, env);
      this.usedArgs.add(key);
      const given = this.options.buildArgs.get(key);
      let value: string | undefined;
      if (given !== undefined && given !== null) value = given;
      else if (defaultValue !== null) value = this.lex.processWord(defaultValue, env);
      else value = this.metaArgs.get(key) ?? this.platformArgs.get(key);
      state.args.set(key, value);
      if (value !== undefined) env.set(key, value);
      parts.push(defaultValue !== null ? `${key}=${this.lex.processWord(defaultValue, env)}` : key);
    }
    await this.commitConfig(state, `ARG ${parts.join(' ')}`, () => {});
  }

  // -------------------------------------------------------------------------------------------
  // RUN

  /** Build args a RUN sees as environment variables: declared ones not shadowed by ENV, proxies. */
  private runArgs(state: StageState): { env: string[]; history: string[] } {
    const configEnv = envMap(state.config.Env);
    const history: string[] = [];
    const env: string[] = [];
    for (const [k, v] of state.args) {
      if (v === undefined || configEnv.has(k)) continue;
      env.push(`${k}=${v}`);
      history.push(`${k}=${v}`);
    }
    for (const [k, v] of this.options.buildArgs) {
      if (PROXY_ARGS.has(k) && v !== null && !state.args.has(k) && !configEnv.has(k)) env.push(`${k}=${v}`);
    }
    history.sort();
    return { env, history };
  }

  private runCommand(state: StageState, command: RunCommand): string[] {
    const shell = state.config.Shell?.length ? state.config.Shell : DEFAULT_SHELL;
    if (command.exec !== null) return command.exec;
    if (command.heredocs.length === 0) return [...shell, command.shell];
    const only = command.heredocs[0];
    if (command.heredocs.length === 1 && /^<<-?(["']?)[A-Za-z0-9_.-]+\1$/.test(command.shell.trim())) {
      const content = only.content;
      const shebang = /^#!(.*)\n/.exec(content);
      if (shebang) {
        const delimiter = `STRATA_HEREDOC_${createHash('sha256').update(content).digest('hex').slice(0, 12)}`;
        return [...shell, `${shebang[1].trim()} /dev/stdin <<'${delimiter}'\n${content}${delimiter}\n`];
      }
      return [...shell, content];
    }
    let script = command.shell;
    for (const doc of command.heredocs) script += `\n${doc.content}${doc.name}`;
    return [...shell, `${script}\n`];
  }

  private async run_(state: StageState, command: RunCommand): Promise<void> {
    if (state.image === null) {
      throw new InvalidArgument(
        'RUN needs a file system: this stage starts FROM scratch and has no files yet',
      );
    }
    const cmd = this.runCommand(state, command);
    const { env, history } = this.runArgs(state);
    const saveCmd = history.length > 0 ? [`|${history.length}`, ...history, ...cmd] : cmd;
    const createdBy = saveCmd.join(' ');
    const network = command.network ?? this.options.networkMode;
    const key = stepKey([this.epoch, state.image.id, 'RUN', saveCmd]);
    const cached = this.probeCache(key);
    if (cached) {
      this.useCached(state, cached);
      return;
    }
    const parent = state.image;
    const body: CreateBody = {
      Image: parent.id,
      Cmd: cmd,
      Entrypoint: [''],
      Env: env,
      User: state.config.User ?? '',
      WorkingDir: state.config.WorkingDir ?? '',
      AttachStdout: true,
      AttachStderr: true,
      Tty: false,
      OpenStdin: false,
      Labels: {},
      // A build step is not a service: no health checks from the image's HEALTHCHECK.
      Healthcheck: { Test: ['NONE'] },
      HostConfig: { NetworkMode: network === 'default' ? 'default' : network, AutoRemove: false },
    };
    const { Id: id } = this.deps.containers.create(body, null);
    let keepContainer = false;
    let succeeded = false;
    const kill = () => {
      void this.deps.containers.remove(id, { force: true, volumes: true }).catch(() => undefined);
    };
    this.signal.addEventListener('abort', kill, { once: true });
    try {
      this.out(` ---> Running in ${shortId(id)}\n`);
      const sink = new RunOutputSink((text) => this.output.stream(text));
      await this.deps.containers.attach(
        id,
        { socket: sink, stdin: false, stdout: true, stderr: true },
        Buffer.alloc(0),
      );
      const exited = this.deps.containers.wait(id, 'next-exit');
      await this.deps.containers.start(id);
      const { StatusCode } = await exited;
      await Promise.race([sink.ended, new Promise((r) => setTimeout(r, 2000).unref())]);
      this.checkCancelled();
      if (StatusCode !== 0) throw new RunFailedError(cmd, StatusCode);
      const containerDir = this.deps.containers.containerDir(id);
      const lowers = parent.chainId ? this.deps.snapshotter.lowerDirs(parent.chainId) : [];
      const changes = runtimeArtifacts(path.join(containerDir, 'upper'), lowers);
      const layer: ContainerDiffSource | null = changes.isEmpty
        ? null
        : { containerDir, exclude: changes.drop, ...this.packOptions() };
      await this.commit(state, key, createdBy, { layer: layer ? { containerDiff: layer } : null });
      succeeded = true;
      keepContainer = !this.options.removeIntermediate;
    } finally {
      this.signal.removeEventListener('abort', kill);
      if (!keepContainer) {
        await this.deps.containers
          .remove(id, { force: true, volumes: true })
          .catch((err) =>
            log.warn('removing an intermediate container failed', { id, error: errorMessage(err) }),
          );
        if (succeeded) this.out(`Removing intermediate container ${shortId(id)}\n`);
      }
    }
  }

  private packOptions(): { clampMtime?: number } {
    return this.epoch === null ? {} : { clampMtime: this.epoch };
  }

  // -------------------------------------------------------------------------------------------
  // File steps: COPY, ADD, WORKDIR

  /**
   * Mounts an overlay of the current image in a private directory, lets `work` change it, and
   * returns the changes as a layer (null when nothing changed).
   */
  private async fileStep(
    state: StageState,
    work: (writer: RootWriter) => Promise<void> | void,
  ): Promise<StepResult> {
    const dir = fs.mkdtempSync(path.join(this.workDir, 'step-'));
    const snapshotter = this.deps.snapshotter;
    const cleanup = () => {
      try {
        snapshotter.removeContainerLayer(dir);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    };
    try {
      snapshotter.prepareContainerLayer(dir);
      const rootfs = snapshotter.mountContainer(dir, state.image?.chainId ?? null);
      try {
        const writer = new RootWriter(rootfs);
        try {
          await work(writer);
        } finally {
          writer.close();
        }
      } finally {
        snapshotter.unmountContainer(dir);
      }
      if (fs.readdirSync(path.join(dir, 'upper')).length === 0) {
        cleanup();
        return { layer: null };
      }
      return { layer: { containerDiff: { containerDir: dir, ...this.packOptions() } }, cleanup };
    } catch (err) {
      cleanup();
      throw err;
    }
  }

  /** Mounts an image read-only-in-practice for COPY --from; call the returned release when done. */
  private mountImage(image: ImageRecord | null): {
    rootfs: string;
    resolve: (p: string) => string;
    release: () => void;
  } {
    const dir = fs.mkdtempSync(path.join(this.workDir, 'from-'));
    const snapshotter = this.deps.snapshotter;
    snapshotter.prepareContainerLayer(dir);
    try {
      const rootfs = snapshotter.mountContainer(dir, image?.chainId ?? null);
      const writer = new RootWriter(rootfs);
      return {
        rootfs,
        resolve: (p) => writer.resolve(p),
        release: () => {
          writer.close();
          try {
            snapshotter.removeContainerLayer(dir);
          } finally {
            fs.rmSync(dir, { recursive: true, force: true });
          }
        },
      };
    } catch (err) {
      snapshotter.removeContainerLayer(dir);
      fs.rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  private async workdir(state: StageState, raw: string): Promise<void> {
    const env = this.stepEnv(state);
    const dir = posixPath.resolve(state.config.WorkingDir || '/', this.lex.processWord(raw, env));
    const shell = state.config.Shell?.length ? state.config.Shell : DEFAULT_SHELL;
    const createdBy = `${shell.join(' ')} #(nop) WORKDIR ${dir}`;
    state.config.WorkingDir = dir;
    const key = stepKey([this.epoch, state.image?.id ?? 'scratch', createdBy, state.config]);
    const cached = this.probeCache(key);
    if (cached) {
      this.useCached(state, cached);
      return;
    }
    const plan = this.newPlan(state);
    plan.mkdirAll(dir, { uid: 0, gid: 0 });
    await this.commit(state, key, createdBy, {
      layer: plan.isEmpty ? null : { tar: plan.toTar(this.epoch) },
    });
  }

  /** A layer plan against the current image (COPY and WORKDIR without a mount). */
  private newPlan(state: StageState): LayerPlan {
    const lowers = state.image?.chainId ? this.deps.snapshotter.lowerDirs(state.image.chainId) : [];
    const nowNs = BigInt(this.epoch !== null ? this.epoch * 1000 : Date.now()) * 1_000_000n;
    return new LayerPlan(new LowerView(lowers), nowNs);
  }

  /**
   * The /etc/passwd and /etc/group of the current image, in a scratch directory, for resolving
   * `--chown` names without mounting the image.
   */
  private identityRoot(state: StageState, plan: LayerPlan): string {
    const dir = fs.mkdtempSync(path.join(this.workDir, 'ids-'));
    fs.mkdirSync(path.join(dir, 'etc'));
    const lowers = state.image?.chainId ? this.deps.snapshotter.lowerDirs(state.image.chainId) : [];
    const view = new LowerView(lowers);
    for (const name of ['passwd', 'group']) {
      const found = view.lookup(plan.resolve(`/etc/${name}`));
      if (found?.stat.isFile() && found.stat.size <= 1 << 20) {
        fs.copyFileSync(found.hostPath, path.join(dir, 'etc', name));
      }
    }
    return dir;
  }

  /** `--chown=user[:group]`, names looked up in the image's own /etc/passwd and /etc/group. */
  private chownIdentity(spec: string | null, rootfs: string): Identity {
    if (spec === null || spec === '') return { uid: 0, gid: 0 };
    const [userPart, groupPart] = spec.split(':', 2);
    const uid = /^\d+$/.test(userPart) ? Number(userPart) : resolveUser(rootfs, userPart).uid;
    const group = groupPart === undefined || groupPart === '' ? userPart : groupPart;
    const gid = /^\d+$/.test(group) ? Number(group) : resolveUser(rootfs, `0:${group}`).gid;
    return { uid, gid };
  }

  private async copy(state: StageState, command: CopyCommand, stage: Stage): Promise<void> {
    const instruction = command.kind;
    const env = this.stepEnv(state);
    const word = (text: string) => this.lex.processWord(text, env);
    const rawDest = word(command.dest);
    const workdir = state.config.WorkingDir || '/';
    const destIsDir = rawDest.endsWith('/') || rawDest === '.' || rawDest.endsWith('/.');
    const dest = posixPath.resolve(workdir, rawDest);
    const from = command.from === null ? null : word(command.from);
    const chown = command.chown === null ? null : word(command.chown);
    const chmod = command.chmod === null ? null : parseChmod(word(command.chmod), instruction);
    const checksum = command.checksum === null ? null : word(command.checksum);
    if (checksum !== null && instruction === 'ADD' && !/^sha256:[a-f0-9]{64}$/.test(checksum)) {
      throw new SourceError(
        `ADD failed: invalid checksum ${JSON.stringify(checksum)} (expected sha256:<64 hex>)`,
      );
    }

    const heredocs = new Map(command.heredocs.map((h) => [h.name, h]));
    const sources: ResolvedSource[] = [];
    const releases: Array<() => void> = [];
    let fromImageId: string | null = null;
    try {
      const fromRaw: string[] = [];
      const contextRaw: string[] = [];
      const urls: string[] = [];
      for (const raw of command.sources) {
        const marker = /^<<-?(["']?)([A-Za-z0-9_.-]+)\1$/.exec(raw);
        const doc = marker ? heredocs.get(marker[2]) : undefined;
        if (doc) {
          const content = doc.expand ? this.lex.expandVariables(doc.content, env) : doc.content;
          const data = Buffer.from(content);
          const mtimeNs = BigInt(Date.now()) * 1_000_000n;
          sources.push({
            source: bufferSource(doc.name, data, 0o644, mtimeNs),
            archive: null,
            hash: createHash('sha256').update(`heredoc\0${doc.name}\0`).update(data).digest('hex'),
          });
          continue;
        }
        const expanded = word(raw);
        if (/^https?:\/\//i.test(expanded)) {
          if (instruction === 'COPY') throw new SourceError("COPY failed: source can't be a URL for COPY");
          urls.push(expanded);
        } else if (/^git@|\.git(#.*)?$/.test(expanded)) {
          throw new SourceError(`${instruction} failed: git sources are not supported: ${expanded}`);
        } else if (from !== null) fromRaw.push(expanded);
        else contextRaw.push(expanded);
      }
      if (contextRaw.length > 0)
        sources.push(...(await resolveContextSources(this.context, contextRaw, instruction)));
      for (const url of urls) {
        const downloaded = await downloadSource(url, this.workDir, this.signal, checksum);
        sources.push(downloaded);
        releases.push(() => fs.rmSync(downloaded.file, { recursive: true, force: true }));
      }
      if (from !== null) {
        const fromImage = this.fromSource(from, stage);
        fromImageId = fromImage?.id ?? 'scratch';
        const mounted = this.mountImage(fromImage);
        releases.push(mounted.release);
        sources.push(...resolveRootSources(mounted.rootfs, mounted.resolve, fromRaw, instruction));
      }
      if (sources.length === 0)
        throw new SourceError(`${instruction} failed: no source files were specified`);
      if ((sources.length > 1 || command.sources.length > 1) && !destIsDir) {
        throw new SourceError(
          `When using ${instruction} with more than one source file, the destination must be a directory and end with a /`,
        );
      }

      const flags = [
        from !== null ? `--from=${from}` : '',
        chown !== null ? `--chown=${chown}` : '',
        chmod !== null ? `--chmod=${chmod.toString(8)}` : '',
      ]
        .filter(Boolean)
        .join(' ');
      const kind =
        sources.length > 1
          ? 'multi'
          : sources[0].source.type === 'directory' && !sources[0].archive
            ? 'dir'
            : 'file';
      const sourceHash = createHash('sha256')
        .update(
          JSON.stringify([
            fromImageId,
            fromRaw,
            sources.map((s) => [s.source.name, s.hash, s.archive !== null]),
          ]),
        )
        .digest('hex');
      const shell = state.config.Shell?.length ? state.config.Shell : DEFAULT_SHELL;
      const createdBy = `${shell.join(' ')} #(nop) ${instruction} ${flags ? `${flags} ` : ''}${kind}:${sourceHash} in ${rawDest.endsWith('/') ? `${dest}/`.replace(/\/+$/, '/') : dest} `;
      const key = stepKey([this.epoch, state.image?.id ?? 'scratch', createdBy, destIsDir, state.config]);
      const cached = this.probeCache(key);
      if (cached) {
        this.useCached(state, cached);
        return;
      }

      if (sources.every((s) => s.archive === null)) {
        const plan = this.newPlan(state);
        let identity: Identity = { uid: 0, gid: 0 };
        if (chown !== null) {
          const ids = this.identityRoot(state, plan);
          try {
            identity = this.chownIdentity(chown, ids);
          } finally {
            fs.rmSync(ids, { recursive: true, force: true });
          }
        }
        const options = { identity, chmod };
        for (const { source } of sources) {
          if (source.type === 'directory') plan.copyDirectoryContents(source, dest, options);
          else
            plan.copyTo(
              source,
              destIsDir || plan.isDirectory(dest) ? posixPath.join(dest, source.name) : dest,
              options,
            );
        }
        await this.commit(state, key, createdBy, {
          layer: plan.isEmpty ? null : { tar: plan.toTar(this.epoch) },
        });
        return;
      }

      // ADD of archives: extracted through an overlay mount of the image (the extractor keeps every
      // entry inside the destination).
      const result = await this.fileStep(state, async (writer) => {
        const options: WriteOptions = { identity: this.chownIdentity(chown, writer.rootDir), chmod };
        for (const { source, archive } of sources) {
          if (archive !== null) {
            const fd = writer.mkdirAll(dest, options.identity);
            fs.closeSync(fd);
            await extractArchiveToRoot(writer.hostPathOf(dest), '/', await archive(), { copyUIDGID: true });
            continue;
          }
          if (source.type === 'directory') {
            writer.copyDirectoryContents(source, dest, options);
            continue;
          }
          const target = destIsDir || writer.isDirectory(dest) ? posixPath.join(dest, source.name) : dest;
          writer.copyTo(source, target, options);
        }
      });
      await this.commit(state, key, createdBy, result);
    } finally {
      for (const release of releases) {
        try {
          release();
        } catch (err) {
          log.warn('releasing a COPY source failed', { error: errorMessage(err) });
        }
      }
    }
  }

  /** `COPY --from=<stage name | stage index | image>`. */
  private fromSource(from: string, stage: Stage): ImageRecord | null {
    const lower = from.toLowerCase();
    const byName = this.dockerfile.stages.find((s) => s.name === lower);
    if (byName) {
      if (byName.index >= stage.index) {
        throw new SourceError(
          `invalid from flag value ${from}: stage ${JSON.stringify(from)} is not built before this one`,
        );
      }
      return this.stageResults.get(byName.index) ?? null;
    }
    if (/^\d+$/.test(from)) {
      const index = Number(from);
      if (index >= stage.index) {
        throw new SourceError(`invalid from flag value ${from}: refers to current or later build stage`);
      }
      return this.stageResults.get(index) ?? null;
    }
    try {
      return this.deps.images.resolve(from);
    } catch (err) {
      if (err instanceof NotFound || err instanceof InvalidArgument) {
        throw new SourceError(
          `invalid from flag value ${from}: no build stage and no local image named ${JSON.stringify(from)}`,
        );
      }
      throw err;
    }
  }
}
