import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { CHART_DIR, ROOT, render } from '../support/chart';
import { PrivateContainerd } from '../support/containerd';
import { criImageReference, parseImageReference } from '../support/image-reference';
import { podContainers, podTemplateOf } from '../support/pod-oci-spec';
import { requireRoot } from '../support/skips';

/*
 * The archive scripts/build-image.sh writes, loaded as docs/install.md tells a node without a
 * registry to: `ctr -n k8s.io images import` into containerd (the test's own daemon). The pods the
 * chart renders with its default values must find their image there under the name the kubelet's
 * image service (CRI) looks it up by, unpacked by the import for the CRI's snapshotter (overlayfs).
 * Runs on the host after the archive is built (scripts/test-all.sh).
 */
const ARCHIVE = join(ROOT, 'dist', 'image', 'vduse-csi.oci.tar');
const K8S_NAMESPACE = 'k8s.io';
/** Generous: the machine's 2 cores are shared; an import takes seconds when they are free. */
const START_MS = 120_000;
const IMPORT_MS = 600_000;
/** What the image's entrypoint runs, and the library RBD volumes are served through (Dockerfile). */
const RUNTIME_FILES = [
  'usr/bin/tini',
  'usr/local/bin/node',
  'app/dist/bundle/vduse-csi.js',
  'usr/lib/x86_64-linux-gnu/librbd.so.1',
];

/** The images of the chart's default pods, the pinned sidecars (pulled from their registries) left out. */
function chartPluginImages(): string[] {
  const values = parse(readFileSync(join(CHART_DIR, 'values.yaml'), 'utf8')) as {
    sidecars: Record<string, { image: { repository: string } }>;
  };
  const sidecars = new Set(Object.values(values.sidecars).map((sidecar) => sidecar.image.repository));
  const images = render()
    .filter((object) => object.kind === 'DaemonSet' || object.kind === 'Deployment')
    .flatMap((workload) => {
      const { init, main } = podContainers(podTemplateOf(workload));
      return [...init, ...main].map((container) => String(container.image));
    })
    .filter((image) => !sidecars.has(parseImageReference(image).repository));
  return [...new Set(images)];
}

describe('the image archive loaded into containerd as a node without a registry loads it', function () {
  this.timeout(IMPORT_MS + 2 * START_MS);
  let containerd: PrivateContainerd | undefined;
  let images: string[];
  const timings: Record<string, number> = {};

  before(async function () {
    requireRoot(this, 'containerd mounts its tmpfs and the image layers (overlayfs)');
    if (!existsSync(ARCHIVE)) throw new Error(`${ARCHIVE} is missing: build it with scripts/build-image.sh`);
    images = chartPluginImages();
    assert.ok(images.length > 0, 'the chart runs the plugin image');
    let started = Date.now();
    containerd = await PrivateContainerd.start(START_MS);
    timings.containerdStartMs = Date.now() - started;
    started = Date.now();
    const output = await containerd.ctr(
      ['--namespace', K8S_NAMESPACE, 'images', 'import', ARCHIVE],
      IMPORT_MS,
    );
    timings.importMs = Date.now() - started;
    console.log(`      ${output.trim()}`);
  });

  after(async () => {
    if (!containerd) return;
    await containerd.stop();
    console.log(`    timings: ${JSON.stringify(timings)}`);
  });

  it("names it as the CRI names the chart's default image", async () => {
    const listed = (
      await containerd!.ctr(['--namespace', K8S_NAMESPACE, 'images', 'ls', '--quiet'], START_MS)
    )
      .split('\n')
      .filter(Boolean);
    for (const image of images)
      assert.ok(
        listed.includes(criImageReference(image)),
        `the chart's pods run ${image}, which the CRI looks up as ${criImageReference(image)}; ` +
          `the import made ${listed.join(', ')}`,
      );
  });

  it('unpacks it (overlayfs), the entrypoint, the plugin and librbd in place', async () => {
    const target = join(containerd!.directory, 'mnt');
    mkdirSync(target);
    const reference = criImageReference(images[0]!);
    await containerd!.ctr(['--namespace', K8S_NAMESPACE, 'images', 'mount', reference, target], START_MS);
    try {
      for (const file of RUNTIME_FILES)
        assert.ok(existsSync(join(target, file)), `${file} is missing from the mounted image`);
    } finally {
      await containerd!.ctr(['--namespace', K8S_NAMESPACE, 'images', 'unmount', '--rm', target], START_MS);
    }
  });
});
