import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/log.js';

/**
 * The host's cgroup layout, and the one repair crun needs on hybrid hosts.
 *
 * These machines mount the v1 controllers under /sys/fs/cgroup and a v2 hierarchy at
 * /sys/fs/cgroup/unified that still owns one controller (hugetlb). crun 1.8 refuses such a host
 * ("cgroups in hybrid mode not supported, drop all controllers from cgroupv2"); runc copes. A controller
 * that no v2 cgroup uses can be re-bound to a v1 hierarchy of its own by mounting it, which leaves the v2
 * mount without controllers — the layout crun accepts.
 */
export type CgroupLayout = 'v1' | 'v2' | 'hybrid';

export function detectCgroupLayout(): CgroupLayout {
  if (fs.existsSync('/sys/fs/cgroup/cgroup.controllers')) return 'v2';
  const unified = '/sys/fs/cgroup/unified/cgroup.controllers';
  if (fs.existsSync(unified) && fs.readFileSync(unified, 'utf8').trim() !== '') return 'hybrid';
  return 'v1';
}

/** Controllers still bound to the v2 mount of a hybrid host. */
export function hybridV2Controllers(): string[] {
  try {
    return fs
      .readFileSync('/sys/fs/cgroup/unified/cgroup.controllers', 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean);
  } catch {
    return [];
  }
}

/**
 * Moves every controller of the v2 mount to a v1 hierarchy of its own (/sys/fs/cgroup/<name>).
 * Returns true when the host is no longer hybrid. Runs once at daemon start (not a hot path, so the
 * `mount` command is fine here).
 */
export function repairHybridCgroups(log: Logger): boolean {
  for (const controller of hybridV2Controllers()) {
    const target = `/sys/fs/cgroup/${controller}`;
    try {
      fs.mkdirSync(target, { recursive: true });
      execFileSync('mount', ['-t', 'cgroup', '-o', controller, 'cgroup', target], { stdio: 'pipe' });
      log.info(`mounted cgroup v1 hierarchy for ${controller} at ${target} (hybrid layout repair for crun)`);
    } catch (err) {
      log.warn(`could not move cgroup controller ${controller} to v1`, { error: errorMessage(err) });
    }
  }
  return detectCgroupLayout() !== 'hybrid';
}

/** Reads a number from a cgroup file, or null when absent. */
export function readCgroupNumber(file: string): number | null {
  try {
    const text = fs.readFileSync(file, 'utf8').trim();
    if (text === 'max') return null;
    const n = Number(text);
    return Number.isFinite(n) ? n : null;
  } catch {
    return null;
  }
}

/** Pids in a container's cgroup (v1: the pids or memory hierarchy's cgroup.procs). */
export function cgroupPids(cgroupPath: string): number[] {
  for (const base of ['/sys/fs/cgroup/pids', '/sys/fs/cgroup/memory', '/sys/fs/cgroup']) {
    try {
      return fs
        .readFileSync(`${base}${cgroupPath}/cgroup.procs`, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map(Number);
    } catch {
      // try the next layout
    }
  }
  return [];
}
