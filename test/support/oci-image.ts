// A container image from an OCI archive (what scripts/build-image.sh writes): its config, read from
// the config blob, and its root filesystem, unpacked layer by layer with the OCI whiteouts applied.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** What a runtime takes from the image config (OCI image-spec config.config). */
export interface ImageConfig {
  entrypoint: string[];
  cmd: string[];
  env: string[];
  /** "uid", "uid:gid", or user names as the image gives them; "" for root. */
  user: string;
  workingDir: string;
}

interface Descriptor {
  mediaType: string;
  digest: string;
  annotations?: Record<string, string>;
}

const GZIP_LAYER =
  /^application\/vnd\.(oci\.image|docker\.image\.rootfs\.diff)\.(layer\.v1\.)?tar(\.gzip|\+gzip)$/;
const PLAIN_LAYER = 'application/vnd.oci.image.layer.v1.tar';
const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';

export class OciImage {
  private constructor(
    readonly archive: string,
    /** Where the archive's OCI layout was extracted (blobs are read from here, not the archive). */
    private readonly layout: string,
    /** The image's name in the archive (org.opencontainers.image.ref.name), e.g. localhost/vduse-csi:0.1.0. */
    readonly refName: string,
    readonly config: ImageConfig,
    private readonly layers: Descriptor[],
  ) {}

  /**
   * Extracts the archive into `layout` (one read of it: the archive may sit on a slow shared
   * filesystem) and reads its only manifest and that manifest's config.
   */
  static open(archive: string, layout: string): OciImage {
    if (!existsSync(archive)) throw new Error(`${archive} is missing: build it with scripts/build-image.sh`);
    mkdirSync(layout, { recursive: true });
    execFileSync('tar', ['-xf', archive, '-C', layout]);
    const json = (path: string): unknown => JSON.parse(readFileSync(join(layout, path), 'utf8'));
    const index = json('index.json') as { manifests: Descriptor[] };
    if (index.manifests.length !== 1)
      throw new Error(`${archive}: expected one image, the index lists ${index.manifests.length}`);
    const descriptor = index.manifests[0]!;
    const manifest = json(blobPath(descriptor.digest)) as {
      config: Descriptor;
      layers: Descriptor[];
    };
    const imageConfig = json(blobPath(manifest.config.digest)) as {
      config?: { Entrypoint?: string[]; Cmd?: string[]; Env?: string[]; User?: string; WorkingDir?: string };
    };
    const config = imageConfig.config ?? {};
    return new OciImage(
      archive,
      layout,
      descriptor.annotations?.['org.opencontainers.image.ref.name'] ?? '',
      {
        entrypoint: config.Entrypoint ?? [],
        cmd: config.Cmd ?? [],
        env: config.Env ?? [],
        user: config.User ?? '',
        workingDir: config.WorkingDir ?? '',
      },
      manifest.layers,
    );
  }

  /**
   * Unpacks every layer into `rootfs` (an empty directory), in order: a layer's whiteouts first
   * remove what lower layers put there (`.wh.NAME` one entry, `.wh..wh..opq` a directory's whole
   * content), then its entries are extracted with their owners, modes and xattrs.
   */
  unpack(rootfs: string, scratch: string): void {
    mkdirSync(rootfs, { recursive: true });
    const tar = join(scratch, 'layer.tar');
    for (const layer of this.layers) {
      const compressed = GZIP_LAYER.test(layer.mediaType);
      if (!compressed && layer.mediaType !== PLAIN_LAYER)
        throw new Error(`${this.archive}: layer media type ${layer.mediaType} is not supported`);
      const path = join(this.layout, blobPath(layer.digest));
      if (compressed) execFileSync('bash', ['-euo', 'pipefail', '-c', 'gzip -dc < "$0" > "$1"', path, tar]);
      else copyFileSync(path, tar);
      const entries = execFileSync('tar', ['-tf', tar], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 })
        .split('\n')
        .filter(Boolean);
      for (const entry of entries) applyWhiteout(rootfs, entry.replace(/^\.\//, '').replace(/\/$/, ''));
      execFileSync('tar', [
        '-xf',
        tar,
        '-C',
        rootfs,
        '--numeric-owner',
        '--same-owner',
        '--same-permissions',
        '--xattrs',
        '--xattrs-include=*',
        `--exclude=${WHITEOUT}*`,
      ]);
      rmSync(tar);
    }
  }
}

function applyWhiteout(rootfs: string, entry: string): void {
  const name = entry.split('/').at(-1) ?? '';
  if (!name.startsWith(WHITEOUT)) return;
  const directory = join(rootfs, dirname(entry));
  if (name === OPAQUE) {
    if (!existsSync(directory)) return;
    for (const child of readdirSync(directory))
      rmSync(join(directory, child), { recursive: true, force: true });
  } else rmSync(join(directory, name.slice(WHITEOUT.length)), { recursive: true, force: true });
}

function blobPath(digest: string): string {
  const [algorithm, hex] = digest.split(':');
  if (!algorithm || !hex || !/^[a-f0-9]+$/.test(hex)) throw new Error(`bad digest ${digest}`);
  return `blobs/${algorithm}/${hex}`;
}
