/**
 * The parts of Engine API responses the CLI reads (field names as dockerd sends them). Every
 * field is optional: the CLI prints what it gets and never trusts a daemon to send everything.
 */

export interface ContainerInspect {
  Id: string;
  Name?: string;
  State?: {
    Status?: string;
    Running?: boolean;
    Paused?: boolean;
    Restarting?: boolean;
    ExitCode?: number;
  };
  Config?: { Tty?: boolean; OpenStdin?: boolean; Image?: string };
}

export interface ContainerSummary {
  Id: string;
  Names?: string[] | null;
  Image?: string;
  ImageID?: string;
  Command?: string;
  Created?: number;
  Ports?: { IP?: string; PrivatePort: number; PublicPort?: number; Type: string }[] | null;
  Labels?: Record<string, string> | null;
  State?: string;
  Status?: string;
  SizeRw?: number;
  SizeRootFs?: number;
  Mounts?: { Type?: string; Name?: string; Source?: string; Driver?: string }[] | null;
  NetworkSettings?: { Networks?: Record<string, unknown> | null } | null;
}

export interface ImageSummary {
  Id: string;
  ParentId?: string;
  RepoTags?: string[] | null;
  RepoDigests?: string[] | null;
  Created?: number;
  Size?: number;
  VirtualSize?: number;
  SharedSize?: number;
  Containers?: number;
  Labels?: Record<string, string> | null;
}

export interface HistoryEntry {
  Id: string;
  Created?: number;
  CreatedBy?: string;
  Tags?: string[] | null;
  Size?: number;
  Comment?: string;
}

export interface WaitResponse {
  StatusCode?: number;
  Error?: { Message?: string } | null;
}

export interface ExecInspect {
  ID?: string;
  Running?: boolean;
  ExitCode?: number | null;
  ContainerID?: string;
}

export interface CreateResponse {
  Id: string;
  Warnings?: string[] | null;
}

export interface EngineEvent {
  Type?: string;
  Action?: string;
  Actor?: { ID?: string; Attributes?: Record<string, string> | null };
  status?: string;
  id?: string;
  from?: string;
  scope?: string;
  time?: number;
  timeNano?: number;
}

export interface TopResponse {
  Titles?: string[];
  Processes?: string[][] | null;
}

export interface ChangeEntry {
  Path: string;
  Kind: number;
}

export interface DeleteResponseItem {
  Untagged?: string;
  Deleted?: string;
}

export interface PruneResponse {
  ContainersDeleted?: string[] | null;
  ImagesDeleted?: DeleteResponseItem[] | null;
  SpaceReclaimed?: number;
}
