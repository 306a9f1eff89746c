import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Compiled seccomp filters, reused across containers. crun turns the spec's seccomp profile into BPF
 * with libseccomp on every `create` — 80–130 ms of CPU per container on our hosts under load (Debian's
 * crun 1.8 is built without its own compiled-filter cache). The filter crun wrote for one container
 * (`<state root>/<id>/seccomp.bpf`) is kept, keyed by the profile, and later containers with the same
 * profile get it through crun's `run.oci.seccomp_bpf_data` annotation (base64 of the raw filter; crun
 * then skips the compilation and still applies the profile's flags). The spec keeps its seccomp
 * section, so it still says what the filter is.
 *
 * Lifecycle per start: `prepare(spec)` before config.json is written (adds the annotation when the
 * filter is known, returns the profile's key), then `learn(stateDir, key)` once `create` succeeded.
 */
export const SECCOMP_BPF_ANNOTATION = 'run.oci.seccomp_bpf_data';
const MAX_ENTRIES = 32;

interface SpecWithSeccomp {
  annotations?: Record<string, string>;
  linux?: unknown;
}

export class SeccompFilterCache {
  private readonly filters = new Map<string, string>();

  /** Adds the cached filter to `spec`; returns the key to `learn` with (null: no seccomp, or cached). */
  prepare(spec: SpecWithSeccomp): string | null {
    const seccomp = (spec.linux as { seccomp?: unknown } | undefined)?.seccomp;
    if (!seccomp) return null;
    if (spec.annotations?.[SECCOMP_BPF_ANNOTATION] !== undefined) return null;
    const key = createHash('sha256').update(JSON.stringify(seccomp)).digest('hex');
    const filter = this.filters.get(key);
    if (filter === undefined) return key;
    spec.annotations = { ...spec.annotations, [SECCOMP_BPF_ANNOTATION]: filter };
    return null;
  }

  /** Keeps the filter the runtime compiled for a created container (`stateDir` = `<root>/<id>`). */
  learn(stateDir: string, key: string | null): void {
    if (key === null || this.filters.has(key)) return;
    let bpf: Buffer;
    try {
      bpf = fs.readFileSync(path.join(stateDir, 'seccomp.bpf'));
    } catch {
      return;
    }
    // struct sock_filter is 8 bytes; an empty or torn file is not worth keeping.
    if (bpf.length === 0 || bpf.length % 8 !== 0) return;
    if (this.filters.size >= MAX_ENTRIES) {
      const oldest = this.filters.keys().next().value;
      if (oldest !== undefined) this.filters.delete(oldest);
    }
    this.filters.set(key, bpf.toString('base64'));
  }
}
