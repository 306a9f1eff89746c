import { z } from 'zod';
import type { Digest } from '../common/digest.js';

/**
 * Container records as the Engine API shows them. `Config` and `HostConfig` are kept in Docker's own
 * shape (validated where we read them, unknown fields preserved) so `inspect` round-trips what clients
 * sent — compose compares them.
 */
const stringList = z.array(z.string()).nullish();
const stringMap = z.record(z.string(), z.string()).nullish();

export const healthcheckSchema = z
  .object({
    Test: stringList,
    Interval: z.number().nullish(),
    Timeout: z.number().nullish(),
    Retries: z.number().nullish(),
    StartPeriod: z.number().nullish(),
  })
  .loose();

export const containerConfigSchema = z
  .object({
    Hostname: z.string().nullish(),
    Domainname: z.string().nullish(),
    User: z.string().nullish(),
    AttachStdin: z.boolean().nullish(),
    AttachStdout: z.boolean().nullish(),
    AttachStderr: z.boolean().nullish(),
    ExposedPorts: z.record(z.string(), z.unknown()).nullish(),
    Tty: z.boolean().nullish(),
    OpenStdin: z.boolean().nullish(),
    StdinOnce: z.boolean().nullish(),
    Env: stringList,
    Cmd: z.union([z.array(z.string()), z.string()]).nullish(),
    Healthcheck: healthcheckSchema.nullish(),
    Image: z.string().nullish(),
    Volumes: z.record(z.string(), z.unknown()).nullish(),
    WorkingDir: z.string().nullish(),
    Entrypoint: z.union([z.array(z.string()), z.string()]).nullish(),
    NetworkDisabled: z.boolean().nullish(),
    OnBuild: stringList,
    Labels: stringMap,
    StopSignal: z.string().nullish(),
    StopTimeout: z.number().int().nullish(),
    Shell: stringList,
  })
  .loose();

export const ulimitSchema = z.object({ Name: z.string(), Soft: z.number(), Hard: z.number() });

export const hostConfigSchema = z
  .object({
    Binds: stringList,
    NetworkMode: z.string().nullish(),
    PortBindings: z.record(z.string(), z.unknown()).nullish(),
    RestartPolicy: z
      .object({ Name: z.string().nullish(), MaximumRetryCount: z.number().nullish() })
      .loose()
      .nullish(),
    AutoRemove: z.boolean().nullish(),
    Runtime: z.string().nullish(),
    Privileged: z.boolean().nullish(),
    ReadonlyRootfs: z.boolean().nullish(),
    CapAdd: stringList,
    CapDrop: stringList,
    Init: z.boolean().nullish(),
    Memory: z.number().nullish(),
    MemorySwap: z.number().nullish(),
    MemoryReservation: z.number().nullish(),
    NanoCpus: z.number().nullish(),
    CpuShares: z.number().nullish(),
    CpuPeriod: z.number().nullish(),
    CpuQuota: z.number().nullish(),
    CpusetCpus: z.string().nullish(),
    PidsLimit: z.number().nullish(),
    ShmSize: z.number().nullish(),
    Ulimits: z.array(ulimitSchema).nullish(),
    Tmpfs: stringMap,
    ExtraHosts: stringList,
    Dns: stringList,
    GroupAdd: stringList,
    SecurityOpt: stringList,
    OomKillDisable: z.boolean().nullish(),
    ConsoleSize: z.array(z.number()).nullish(),
  })
  .loose();

export const createBodySchema = containerConfigSchema
  .extend({
    HostConfig: hostConfigSchema.nullish(),
    NetworkingConfig: z.record(z.string(), z.unknown()).nullish(),
  })
  .loose();

export type ContainerConfig = z.infer<typeof containerConfigSchema>;
export type HostConfig = z.infer<typeof hostConfigSchema>;
export type CreateBody = z.infer<typeof createBodySchema>;

export type ContainerStatus =
  | 'created'
  | 'running'
  | 'paused'
  | 'restarting'
  | 'removing'
  | 'exited'
  | 'dead';

export interface ContainerState {
  status: ContainerStatus;
  pid: number;
  exitCode: number;
  error: string;
  startedAt: string;
  finishedAt: string;
  oomKilled: boolean;
  /** conmon's pid while running (checked on daemon restart). */
  conmonPid: number;
}

export interface ContainerRecord {
  id: string;
  /** Without the leading slash. */
  name: string;
  created: string;
  path: string;
  args: string[];
  /** Image reference as the client gave it (`bb:latest`); `Config.Image` shows this. */
  imageRef: string;
  imageId: Digest;
  chainId: Digest | null;
  config: ContainerConfig & {
    Env: string[];
    Cmd: string[] | null;
    Entrypoint: string[] | null;
    Labels: Record<string, string>;
  };
  hostConfig: HostConfig;
  networkingConfig: Record<string, unknown>;
  state: ContainerState;
  restartCount: number;
  runtime: 'crun' | 'runc';
  /** Set once the container has been started (paths are empty before, as dockerd shows them). */
  hasStarted: boolean;
}

export const NEVER = '0001-01-01T00:00:00Z';
