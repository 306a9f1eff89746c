import { createHash, randomBytes, randomInt } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { type DescriptorJson, mt } from './conformance-api.js';

/**
 * The test content of the conformance suite (conformance/testdata.go), generated afresh per run:
 * tar layers (gzip or not), image configs, image manifests, indexes, artifacts, subjects and
 * referrers, with the options the suite combines (algorithm, annotations, artifactType, extra fields…).
 */
export type Algorithm = 'sha256' | 'sha512';

export function digestOf(data: Buffer, algorithm: Algorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(data).digest('hex')}`;
}

export interface GenOptions {
  algo?: Algorithm;
  annotations?: Record<string, string>;
  annotationUniq?: boolean;
  artifactType?: string;
  blobSize?: number;
  compress?: boolean;
  configBytes?: Buffer;
  configMediaType?: string;
  descriptorMediaType?: string;
  extraField?: boolean;
  layerBytes?: Buffer;
  layerCount?: number;
  layerMediaType?: string;
  platform?: { os: string; architecture: string };
  platforms?: ({ os: string; architecture: string } | null)[];
  setData?: boolean;
  subject?: DescriptorJson;
  tag?: string;
}

function randomText(): string {
  return randomBytes(13)
    .toString('base64url')
    .toUpperCase()
    .replace(/[^A-Z0-9]/g, 'X');
}

/** A one-file tar archive, as the suite's layers are (512-byte header, data, padding, two zero blocks). */
export function tarOneFile(name: string, content: Buffer): Buffer {
  const header = Buffer.alloc(512);
  header.write(name, 0, 100, 'utf8');
  header.write('0000644\0', 100);
  header.write('0000000\0', 108);
  header.write('0000000\0', 116);
  header.write(`${content.length.toString(8).padStart(11, '0')}\0`, 124);
  header.write(
    `${Math.floor(Date.now() / 1000)
      .toString(8)
      .padStart(11, '0')}\0`,
    136,
  );
  header.write('        ', 148);
  header.write('0', 156);
  header.write('ustar\0', 257);
  header.write('00', 263);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  const padding = Buffer.alloc((512 - (content.length % 512)) % 512);
  return Buffer.concat([header, content, padding, Buffer.alloc(1024)]);
}

export class TestData {
  readonly tags = new Map<string, string>();
  readonly tagPushed = new Set<string>();
  readonly desc = new Map<string, DescriptorJson>();
  readonly blobs = new Map<string, Buffer>();
  readonly manifests = new Map<string, Buffer>();
  /** Manifests in push order; children before the indexes naming them. */
  readonly manOrder: string[] = [];
  readonly referrers = new Map<string, DescriptorJson[]>();
  /** Manifests whose push must fail with 400 (and which are not pulled afterwards). */
  readonly badDigest = new Set<string>();
  /** Manifests pushed by digest with `?tag=` parameters. */
  readonly tagParam = new Set<string>();

  constructor(readonly name: string) {}

  addBlob(data: Buffer, o: GenOptions = {}): string {
    const digest = digestOf(data, o.algo);
    this.blobs.set(digest, data);
    const d: DescriptorJson = { mediaType: o.descriptorMediaType ?? mt.octet, digest, size: data.length };
    if (o.setData) d.data = data.toString('base64');
    this.desc.set(digest, d);
    return digest;
  }

  genBlob(o: GenOptions = {}): { digest: string; data: Buffer } {
    const data = randomBytes(o.blobSize ?? 2048);
    return { digest: this.addBlob(data, o), data };
  }

  /** A tar layer; returns the compressed digest (pushed) and the uncompressed one (config diff id). */
  genLayer(fileNum: number, o: GenOptions = {}): { digest: string; diffId: string } {
    const text = `Conformance test file contents for file number ${fileNum}.\nTodays lucky number is ${randomInt(2 ** 47)}\n`;
    const tar = tarOneFile(`./conformance-${fileNum}.txt`, Buffer.from(text));
    const compress = o.compress ?? true;
    const body = compress ? gzipSync(tar) : tar;
    const digest = digestOf(body, o.algo);
    this.blobs.set(digest, body);
    const d: DescriptorJson = {
      mediaType: compress ? mt.ociLayerGz : mt.ociLayer,
      digest,
      size: body.length,
    };
    if (o.setData) d.data = body.toString('base64');
    this.desc.set(digest, d);
    return { digest, diffId: digestOf(tar, o.algo) };
  }

  genConfig(platform: { os: string; architecture: string }, diffIds: string[], o: GenOptions = {}): string {
    const config: Record<string, unknown> = {
      author: 'OCI Conformance Test',
      architecture: platform.architecture,
      os: platform.os,
      rootfs: { type: 'layers', diff_ids: diffIds },
    };
    if (o.extraField) config[`org.${randomText()}`] = randomText();
    const body = Buffer.from(JSON.stringify(config));
    const digest = digestOf(body, o.algo);
    this.blobs.set(digest, body);
    const d: DescriptorJson = { mediaType: o.configMediaType ?? mt.ociConfig, digest, size: body.length };
    if (o.setData) d.data = body.toString('base64');
    this.desc.set(digest, d);
    return digest;
  }

  genManifest(config: DescriptorJson, layers: DescriptorJson[], o: GenOptions = {}): string {
    const m: Record<string, unknown> = { schemaVersion: 2, mediaType: mt.ociImage };
    if (o.artifactType) m.artifactType = o.artifactType;
    m.config = config;
    m.layers = layers;
    if (o.subject) m.subject = o.subject;
    let annotations = o.annotations;
    if (o.annotationUniq) annotations = { ...annotations, [`org.example.${randomText()}`]: randomText() };
    if (annotations) m.annotations = annotations;
    if (o.extraField) m[`org.${randomText()}`] = randomText();
    const body = Buffer.from(JSON.stringify(m));
    const digest = this.addManifest(body, mt.ociImage, o);
    if (o.subject) {
      const r: DescriptorJson = {
        mediaType: mt.ociImage,
        artifactType: o.artifactType || config.mediaType,
        digest,
        size: body.length,
      };
      if (annotations) r.annotations = annotations;
      this.addReferrer(o.subject.digest, r);
    }
    return digest;
  }

  genManifestFull(o: GenOptions = {}): string {
    const layerCount = o.layerCount ?? 2;
    const platform = o.platform ?? { os: 'linux', architecture: 'amd64' };
    const pushed: string[] = [];
    const diffIds: string[] = [];
    for (let l = 0; l < layerCount; l++) {
      if (
        o.layerMediaType === undefined ||
        o.layerMediaType.startsWith('application/vnd.oci.image.layer.v1.')
      ) {
        const { digest, diffId } = this.genLayer(l, o);
        pushed.push(digest);
        diffIds.push(diffId);
      } else {
        const lo = { ...o, descriptorMediaType: o.layerMediaType };
        const digest = o.layerBytes ? this.addBlob(o.layerBytes, lo) : this.genBlob(lo).digest;
        pushed.push(digest);
        diffIds.push(digest);
      }
    }
    let configDigest: string;
    if (o.configMediaType === undefined || o.configMediaType === mt.ociConfig) {
      configDigest = this.genConfig(platform, diffIds, o);
    } else {
      configDigest = this.addBlob(o.configBytes ?? Buffer.from('{}'), {
        ...o,
        descriptorMediaType: o.configMediaType,
      });
    }
    const layers = pushed.map((d) => this.desc.get(d) as DescriptorJson);
    return this.genManifest(this.desc.get(configDigest) as DescriptorJson, layers, o);
  }

  genIndex(platforms: GenOptions['platforms'], children: string[], o: GenOptions = {}): string {
    const m: Record<string, unknown> = { schemaVersion: 2, mediaType: mt.ociIndex };
    if (o.artifactType) m.artifactType = o.artifactType;
    m.manifests = children.map((c, i) => {
      const d: DescriptorJson = { ...(this.desc.get(c) as DescriptorJson) };
      const p = platforms?.[i];
      if (p) d.platform = p;
      return d;
    });
    if (o.subject) m.subject = o.subject;
    let annotations = o.annotations;
    if (o.annotationUniq) annotations = { ...annotations, [`org.example.${randomText()}`]: randomText() };
    if (annotations) m.annotations = annotations;
    if (o.extraField) m[`org.${randomText()}`] = randomText();
    const body = Buffer.from(JSON.stringify(m));
    const digest = this.addManifest(body, mt.ociIndex, o);
    if (o.subject) {
      const r: DescriptorJson = { mediaType: mt.ociIndex, digest, size: body.length };
      if (o.artifactType) r.artifactType = o.artifactType;
      if (annotations) r.annotations = annotations;
      this.addReferrer(o.subject.digest, r);
    }
    return digest;
  }

  genIndexFull(o: GenOptions = {}): string {
    const platforms = o.platforms ?? [
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 'arm64' },
    ];
    const children = platforms.map((p) => this.genManifestFull({ ...o, platform: p ?? undefined }));
    return this.genIndex(platforms, children, o);
  }

  private addManifest(body: Buffer, mediaType: string, o: GenOptions): string {
    const digest = digestOf(body, o.algo);
    this.manifests.set(digest, body);
    this.manOrder.push(digest);
    const d: DescriptorJson = { mediaType, digest, size: body.length };
    if (o.setData) d.data = body.toString('base64');
    this.desc.set(digest, d);
    if (o.tag) this.tags.set(o.tag, digest);
    return digest;
  }

  private addReferrer(subject: string, descriptor: DescriptorJson): void {
    this.referrers.set(subject, [...(this.referrers.get(subject) ?? []), descriptor]);
  }
}

/** The data sets of the suite's GenerateData, with every optional data test enabled (as in its defaults). */
export function generateDataSets(): TestData[] {
  const sets: TestData[] = [];
  const add = (name: string, build: (td: TestData) => void): void => {
    const td = new TestData(name);
    build(td);
    sets.push(td);
  };
  const amd64 = { os: 'linux', architecture: 'amd64' };
  const arm64 = { os: 'linux', architecture: 'arm64' };
  const conformanceAnnotation = { 'org.opencontainers.conformance': 'hello conformance test' };

  add('image', (td) => td.genManifestFull({ tag: 'image' }));
  add('image-uncompressed', (td) => td.genManifestFull({ tag: 'image-uncompressed', compress: false }));
  add('large-manifest', (td) => {
    const annotations: Record<string, string> = {};
    for (let i = 0; i < 390; i++) annotations[`large-annotation-${i}`] = 'A'.repeat(10000);
    td.genManifestFull({ tag: 'large-manifest', annotations });
  });
  add('index', (td) => td.genIndexFull({ tag: 'index', platforms: [amd64, arm64] }));
  add('nested-index', (td) => {
    const a = td.genIndexFull({ platforms: [amd64, arm64] });
    const b = td.genIndexFull({ platforms: [amd64, arm64] });
    td.genIndex([null, null], [a, b], { tag: 'index-of-index' });
  });
  add('empty-index', (td) => td.genIndexFull({ tag: 'index', platforms: [] }));
  const artifact: GenOptions = {
    artifactType: mt.exampleConf1,
    configMediaType: mt.ociEmptyJson,
    configBytes: Buffer.from('{}'),
    layerCount: 1,
    layerMediaType: mt.exampleConf1,
  };
  add('artifact', (td) => td.genManifestFull({ ...artifact, tag: 'artifact' }));
  add('artifact-index', (td) =>
    td.genIndexFull({ ...artifact, tag: 'artifact-index', platforms: [amd64, arm64] }),
  );
  add('artifact-without-layers', (td) =>
    td.genManifestFull({
      ...artifact,
      tag: 'artifact-without-layers',
      layerBytes: Buffer.from('{}'),
      layerMediaType: mt.ociEmptyJson,
    }),
  );
  add('artifacts-with-subject', (td) => {
    const subject = td.desc.get(td.genManifestFull({ tag: 'image' })) as DescriptorJson;
    td.genManifestFull({ subject });
    td.genManifestFull({
      ...artifact,
      annotations: conformanceAnnotation,
      annotationUniq: true,
      subject,
      tag: 'tagged-artifact1',
    });
    td.genManifestFull({
      ...artifact,
      artifactType: mt.exampleConf2,
      layerMediaType: mt.octet,
      annotations: conformanceAnnotation,
      annotationUniq: true,
      subject,
      tag: 'tagged-artifact2',
    });
  });
  add('index-with-subject', (td) => {
    const subject = td.desc.get(td.genIndexFull({ tag: 'index' })) as DescriptorJson;
    td.genIndexFull({
      ...artifact,
      annotations: conformanceAnnotation,
      annotationUniq: true,
      subject,
      tag: 'tagged-artifact',
    });
  });
  add('missing-subject', (td) => {
    const subject: DescriptorJson = {
      mediaType: mt.ociImage,
      size: 123,
      digest: digestOf(Buffer.from('missing content')),
    };
    td.genManifestFull({
      ...artifact,
      annotations: conformanceAnnotation,
      annotationUniq: true,
      subject,
      tag: 'tagged-artifact',
    });
  });
  add('data-field', (td) => td.genManifestFull({ tag: 'data-field', setData: true }));
  add('non-distributable-layers', (td) => {
    const confDigests: string[] = [digestOf(randomBytes(256))];
    const d0 = digestOf(randomBytes(256));
    const d1 = digestOf(randomBytes(256));
    confDigests.push(d1);
    const layers: DescriptorJson[] = [
      {
        mediaType: mt.ociLayerNdGz,
        digest: d0,
        size: 123456,
        urls: [`https://store.example.com/blobs/sha256/${d0.slice(7)}`],
      },
      {
        mediaType: mt.ociLayerNd,
        digest: d1,
        size: 12345,
        urls: [`https://store.example.com/blobs/sha256/${d1.slice(7)}`],
      },
    ];
    const { digest, diffId } = td.genLayer(1);
    confDigests.push(diffId);
    layers.push(td.desc.get(digest) as DescriptorJson);
    const config = td.genConfig(amd64, confDigests);
    td.genManifest(td.desc.get(config) as DescriptorJson, layers, { tag: 'non-distributable-image' });
  });
  add('custom-fields', (td) =>
    td.genIndexFull({ tag: 'custom-fields', platforms: [amd64, arm64], extraField: true }),
  );
  add('no-layers', (td) => td.genManifestFull({ tag: 'no-layers', layerCount: 0 }));
  add('sha512', (td) => td.genIndexFull({ algo: 'sha512' }));
  for (const algo of ['sha256', 'sha512'] as const) {
    add(`tag-param-${algo}`, (td) => {
      td.genIndexFull({ tag: `tag-param-${algo}`, algo });
      td.manOrder.forEach((digest, i) => {
        td.tags.set(`tag-param-${algo}-${i}`, digest);
        td.tagParam.add(digest);
      });
    });
  }
  add('bad-digest-image', (td) => {
    const digest = td.genManifestFull();
    td.badDigest.add(digest);
    td.manifests.set(digest, Buffer.concat([td.manifests.get(digest) as Buffer, Buffer.from('  ')]));
  });
  return sets;
}
