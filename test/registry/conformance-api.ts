import assert from 'node:assert/strict';
import { type Response, request } from './helpers.js';

/**
 * The request sequences of the OCI distribution-spec conformance suite (conformance/api.go of the
 * current standalone suite), re-expressed in TypeScript against a registry URL: each function drives
 * one API the way the suite does and asserts what the suite asserts. Registries may answer some
 * optional features with a fallback (202 instead of 201); those return 'fallback' instead of failing,
 * and the tests decide — Strata supports all of them, so its tests require the full behaviour.
 */
export const mt = {
  octet: 'application/octet-stream',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociImage: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGz: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerNd: 'application/vnd.oci.image.layer.nondistributable.v1.tar',
  ociLayerNdGz: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  ociEmptyJson: 'application/vnd.oci.empty.v1+json',
  exampleConf1: 'application/vnd.example.oci.conformance.v1',
  exampleConf2: 'application/vnd.example.oci.conformance.v2',
} as const;

export const CHUNK_MIN = 1024;

export interface Flags {
  outOfOrder?: boolean;
  putLastChunk?: boolean;
  expectBadDigest?: boolean;
}

export class ConformanceApi {
  constructor(readonly url: string) {}

  do(method: string, pathOrUrl: string, opts: Parameters<typeof request>[3] = {}): Promise<Response> {
    return request(this.url, method, pathOrUrl, opts);
  }

  /** Resolves a Location header against the request URL, as an HTTP client would. */
  resolve(location: string | undefined, base: string): URL {
    assert.ok(location, 'response has no Location header');
    return new URL(location, new URL(base, this.url));
  }

  private withDigest(u: URL, digest: string): string {
    const copy = new URL(u);
    copy.searchParams.set('digest', digest);
    return copy.pathname + copy.search;
  }

  verifyDigestHeader(res: Response, digest: string): void {
    const header = res.headers['docker-content-digest'];
    if (header !== undefined) assert.equal(header, digest, 'Docker-Content-Digest header');
  }

  async verifyLocation(location: URL, body: Buffer): Promise<void> {
    const res = await this.do('GET', location.pathname + location.search);
    assert.equal(res.status, 200, `GET returned location ${location.pathname}`);
    assert.deepEqual(res.body, body, 'blob body at returned location');
  }

  async blobPostOnly(repo: string, digest: string, body: Buffer, flags: Flags = {}): Promise<void> {
    const p = `/v2/${repo}/blobs/uploads/?digest=${encodeURIComponent(digest)}`;
    const res = await this.do('POST', p, { body, headers: { 'Content-Type': mt.octet } });
    if (flags.expectBadDigest) {
      assert.equal(res.status, 400, `bad-digest POST: ${res.text}`);
      return;
    }
    assert.equal(res.status, 201, `POST with digest: ${res.text}`);
    this.verifyDigestHeader(res, digest);
    await this.verifyLocation(this.resolve(res.headers.location, p), body);
  }

  async blobPostPut(repo: string, digest: string, body: Buffer, flags: Flags = {}): Promise<void> {
    const p = `/v2/${repo}/blobs/uploads/`;
    const post = await this.do('POST', p);
    assert.equal(post.status, 202, `POST: ${post.text}`);
    const u = this.resolve(post.headers.location, p);
    const put = await this.do('PUT', this.withDigest(u, digest), {
      body,
      headers: { 'Content-Type': mt.octet },
    });
    if (flags.expectBadDigest) {
      assert.equal(put.status, 400, `bad-digest PUT: ${put.text}`);
      return;
    }
    assert.equal(put.status, 201, `PUT: ${put.text}`);
    this.verifyDigestHeader(put, digest);
    await this.verifyLocation(this.resolve(put.headers.location, u.pathname), body);
  }

  async blobPatchStream(repo: string, digest: string, body: Buffer, flags: Flags = {}): Promise<void> {
    const p = `/v2/${repo}/blobs/uploads/`;
    const post = await this.do('POST', p, { headers: { 'Content-Length': 0 } });
    assert.equal(post.status, 202);
    let u = this.resolve(post.headers.location, p);
    const patch = await this.do('PATCH', u.pathname + u.search, {
      body,
      chunked: true,
      headers: { 'Content-Type': mt.octet },
    });
    assert.equal(patch.status, 202, `streamed PATCH: ${patch.text}`);
    u = this.resolve(patch.headers.location, u.pathname);
    const put = await this.do('PUT', this.withDigest(u, digest), {
      headers: { 'Content-Length': 0, 'Content-Type': mt.octet },
    });
    if (flags.expectBadDigest) {
      assert.equal(put.status, 400, `bad-digest PUT: ${put.text}`);
      return;
    }
    assert.equal(put.status, 201, `PUT: ${put.text}`);
    this.verifyDigestHeader(put, digest);
    await this.verifyLocation(this.resolve(put.headers.location, u.pathname), body);
  }

  async blobPatchChunked(repo: string, digest: string, body: Buffer, flags: Flags = {}): Promise<void> {
    const p = `/v2/${repo}/blobs/uploads/`;
    const post = await this.do('POST', p, { headers: { 'Content-Length': 0 } });
    assert.equal(post.status, 202);
    let location = String(post.headers.location);
    let u = this.resolve(location, p);
    let chunkSize = Math.floor(body.length / 3) + 1;
    const minHeader = post.headers['oci-chunk-min-length'];
    if (typeof minHeader === 'string') chunkSize = Math.max(chunkSize, Number(minHeader));
    chunkSize = Math.min(Math.max(chunkSize, CHUNK_MIN), body.length);
    let lastByte = -1;
    let finalResponse: Response | undefined;
    // At most one round per chunk: lastByte grows by chunkSize (≥ 1) each time.
    for (let round = 0; lastByte < body.length - 1 && round <= body.length; round++) {
      if (flags.outOfOrder) {
        u = this.resolve(location, u.pathname);
        let badStart = lastByte + 1 + chunkSize;
        if (badStart >= body.length) badStart = 0;
        const badLast = Math.min(badStart + chunkSize - 1, body.length - 1);
        let method = 'PATCH';
        let target = u.pathname + u.search;
        if (flags.putLastChunk && badLast === body.length - 1) {
          method = 'PUT';
          target = this.withDigest(u, digest);
        }
        const bad = await this.do(method, target, {
          body: body.subarray(badStart, badLast + 1),
          headers: { 'Content-Type': mt.octet, 'Content-Range': `${badStart}-${badLast}` },
        });
        assert.equal(bad.status, 416, `out-of-order chunk ${badStart}-${badLast}: ${bad.status} ${bad.text}`);
        if (bad.headers.location) location = String(bad.headers.location);
        const status = await this.do('GET', u.pathname + u.search);
        assert.equal(status.status, 204, 'upload status after 416');
        if (status.headers.location) location = String(status.headers.location);
        const range = String(status.headers.range ?? '');
        assert.ok(range.startsWith('0-'), `Range header ${range}`);
        if (lastByte >= 0) assert.equal(Number(range.slice(2)), lastByte, 'Range after 416');
      }
      u = this.resolve(location, u.pathname);
      const start = lastByte + 1;
      lastByte = Math.min(start + chunkSize - 1, body.length - 1);
      const chunk = body.subarray(start, lastByte + 1);
      const headers = { 'Content-Type': mt.octet, 'Content-Range': `${start}-${lastByte}` };
      if (flags.putLastChunk && lastByte === body.length - 1) {
        finalResponse = await this.do('PUT', this.withDigest(u, digest), { body: chunk, headers });
        if (flags.expectBadDigest) {
          assert.equal(finalResponse.status, 400, `bad-digest PUT with last chunk: ${finalResponse.text}`);
          return;
        }
        assert.equal(finalResponse.status, 201, `PUT with last chunk: ${finalResponse.text}`);
        location = String(finalResponse.headers.location);
      } else {
        const res = await this.do('PATCH', u.pathname + u.search, { body: chunk, headers });
        assert.equal(res.status, 202, `PATCH ${start}-${lastByte}: ${res.text}`);
        assert.equal(res.headers.range, `0-${lastByte}`, 'Range after PATCH');
        location = String(res.headers.location);
      }
    }
    if (!flags.putLastChunk) {
      u = this.resolve(location, u.pathname);
      finalResponse = await this.do('PUT', this.withDigest(u, digest), {
        headers: { 'Content-Length': 0, 'Content-Type': mt.octet },
      });
      if (flags.expectBadDigest) {
        assert.equal(finalResponse.status, 400, `bad-digest PUT: ${finalResponse.text}`);
        return;
      }
      assert.equal(finalResponse.status, 201, `closing PUT: ${finalResponse.text}`);
      location = String(finalResponse.headers.location);
    }
    assert.ok(finalResponse);
    this.verifyDigestHeader(finalResponse, digest);
    await this.verifyLocation(this.resolve(location, u.pathname), body);
  }

  /** Mounts `digest` from `source` ('' = anonymous mount); 'fallback' when the registry started an upload instead. */
  async blobMount(
    repo: string,
    source: string,
    digest: string,
    body: Buffer,
  ): Promise<'mounted' | 'fallback'> {
    const q = new URLSearchParams({ mount: digest });
    if (source !== '') q.set('from', source);
    const p = `/v2/${repo}/blobs/uploads/?${q.toString()}`;
    const post = await this.do('POST', p);
    assert.ok(post.status === 201 || post.status === 202, `mount POST: ${post.status} ${post.text}`);
    const u = this.resolve(post.headers.location, p);
    if (post.status === 202) {
      const put = await this.do('PUT', this.withDigest(u, digest), {
        body,
        headers: { 'Content-Type': mt.octet },
      });
      assert.equal(put.status, 201, `PUT after unmountable: ${put.text}`);
      return 'fallback';
    }
    this.verifyDigestHeader(post, digest);
    await this.verifyLocation(u, body);
    return 'mounted';
  }

  async blobPostCancel(repo: string): Promise<void> {
    const p = `/v2/${repo}/blobs/uploads/`;
    const post = await this.do('POST', p);
    assert.equal(post.status, 202);
    const u = this.resolve(post.headers.location, p);
    const del = await this.do('DELETE', u.pathname + u.search, { headers: { 'Content-Length': 0 } });
    assert.equal(del.status, 204, `cancel: ${del.text}`);
    const after = await this.do('GET', u.pathname + u.search);
    assert.equal(after.status, 404, 'status of a cancelled upload');
  }

  async blobGetExistsFull(repo: string, digest: string, body?: Buffer): Promise<void> {
    const res = await this.do('GET', `/v2/${repo}/blobs/${digest}`);
    assert.equal(res.status, 200, `GET blob ${digest}`);
    if (body !== undefined) {
      assert.deepEqual(res.body, body);
      assert.equal(res.headers['content-length'], String(body.length));
    }
    this.verifyDigestHeader(res, digest);
  }

  async blobHeadExists(repo: string, digest: string, body?: Buffer): Promise<void> {
    const res = await this.do('HEAD', `/v2/${repo}/blobs/${digest}`);
    assert.equal(res.status, 200, `HEAD blob ${digest}`);
    assert.equal(res.body.length, 0, 'HEAD has no body');
    if (body !== undefined) assert.equal(res.headers['content-length'], String(body.length));
    this.verifyDigestHeader(res, digest);
  }

  async blobDelete(repo: string, digest: string): Promise<void> {
    const res = await this.do('DELETE', `/v2/${repo}/blobs/${digest}`);
    assert.ok([202, 404].includes(res.status), `DELETE blob: ${res.status}`);
    const head = await this.do('HEAD', `/v2/${repo}/blobs/${digest}`);
    assert.equal(head.status, 404, 'blob gone right after DELETE');
  }

  async manifestPut(
    repo: string,
    reference: string,
    digest: string,
    body: Buffer,
    opts: { tags?: string[]; expectBadDigest?: boolean } = {},
  ): Promise<Response> {
    const mediaType = detectMediaType(body);
    const q = new URLSearchParams();
    for (const t of opts.tags ?? []) q.append('tag', t);
    const p = `/v2/${repo}/manifests/${reference}${q.size > 0 ? `?${q.toString()}` : ''}`;
    const res = await this.do('PUT', p, { body, headers: { 'Content-Type': mediaType } });
    if (opts.expectBadDigest) {
      assert.equal(res.status, 400, `bad-digest manifest PUT: ${res.text}`);
      return res;
    }
    assert.equal(res.status, 201, `manifest PUT ${reference}: ${res.text}`);
    const subject = detectSubject(body);
    if (subject !== undefined) assert.equal(res.headers['oci-subject'], subject, 'OCI-Subject header');
    this.verifyDigestHeader(res, digest);
    const u = this.resolve(res.headers.location, p);
    const get = await this.do('GET', u.pathname + u.search, {
      headers: { Accept: `${mt.ociIndex}, ${mt.ociImage}` },
    });
    assert.equal(get.status, 200, 'GET manifest at returned location');
    assert.equal(get.headers['content-type'], mediaType);
    assert.equal(get.headers['content-length'], String(body.length));
    assert.deepEqual(get.body, body);
    return res;
  }

  async manifestGetExists(repo: string, reference: string, digest: string, body: Buffer): Promise<void> {
    const res = await this.do('GET', `/v2/${repo}/manifests/${reference}`, {
      headers: { Accept: `${mt.ociIndex}, ${mt.ociImage}` },
    });
    assert.equal(res.status, 200, `GET manifest ${reference}`);
    assert.deepEqual(res.body, body);
    assert.equal(res.headers['content-type'], detectMediaType(body));
    assert.equal(res.headers['content-length'], String(body.length));
    this.verifyDigestHeader(res, digest);
  }

  async manifestHeadExists(repo: string, reference: string, digest: string, body: Buffer): Promise<void> {
    const res = await this.do('HEAD', `/v2/${repo}/manifests/${reference}`, {
      headers: { Accept: `${mt.ociIndex}, ${mt.ociImage}` },
    });
    assert.equal(res.status, 200, `HEAD manifest ${reference}`);
    assert.equal(res.body.length, 0);
    assert.equal(res.headers['content-type'], detectMediaType(body));
    assert.equal(res.headers['content-length'], String(body.length));
    this.verifyDigestHeader(res, digest);
  }

  async manifestDelete(repo: string, reference: string): Promise<void> {
    const res = await this.do('DELETE', `/v2/${repo}/manifests/${reference}`);
    assert.ok([202, 404].includes(res.status), `DELETE manifest ${reference}: ${res.status} ${res.text}`);
    const head = await this.do('HEAD', `/v2/${repo}/manifests/${reference}`);
    assert.equal(head.status, 404, `manifest ${reference} gone right after DELETE`);
  }

  async tagList(repo: string, query = ''): Promise<{ name: string; tags: string[] }> {
    const res = await this.do('GET', `/v2/${repo}/tags/list${query}`);
    if (res.status === 404) return { name: repo, tags: [] };
    assert.equal(res.status, 200, `tags list: ${res.text}`);
    return res.json as { name: string; tags: string[] };
  }

  async referrers(
    repo: string,
    subject: string,
    artifactType?: string,
  ): Promise<{ index: ReferrersIndex; filters?: string }> {
    const q = artifactType === undefined ? '' : `?artifactType=${encodeURIComponent(artifactType)}`;
    const res = await this.do('GET', `/v2/${repo}/referrers/${subject}${q}`);
    assert.equal(res.status, 200, `referrers: ${res.text}`);
    assert.equal(res.headers['content-type'], mt.ociIndex);
    const index = res.json as ReferrersIndex;
    assert.equal(index.mediaType, mt.ociIndex);
    assert.equal(index.schemaVersion, 2);
    const filters = res.headers['oci-filters-applied'];
    return { index, filters: typeof filters === 'string' ? filters : undefined };
  }
}

export interface DescriptorJson {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
  data?: string;
  urls?: string[];
  platform?: { os: string; architecture: string };
}

export interface ReferrersIndex {
  schemaVersion: number;
  mediaType: string;
  manifests: DescriptorJson[];
}

export function detectMediaType(body: Buffer): string {
  try {
    const json = JSON.parse(body.toString('utf8')) as { mediaType?: string };
    return json.mediaType ?? mt.ociImage;
  } catch {
    return mt.ociImage;
  }
}

export function detectSubject(body: Buffer): string | undefined {
  try {
    return (JSON.parse(body.toString('utf8')) as { subject?: { digest?: string } }).subject?.digest;
  } catch {
    return undefined;
  }
}
