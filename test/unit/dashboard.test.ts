import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { stringify } from 'yaml';
import { IoCounters } from '../../src/daemon/io-counters';
import { registerControllerMetrics } from '../../src/metrics/controller-metrics';
import { csiCallMetrics } from '../../src/metrics/csi-calls';
import { registerDaemonMetrics } from '../../src/metrics/daemon-metrics';
import { registerDaemonFootprint } from '../../src/metrics/daemon-footprint';
import { processRegistry } from '../../src/metrics/registry';
import { registerNodeVolumeMetrics } from '../../src/metrics/node-volume-metrics';
import { CHART_DIR, KubeObject, NAMESPACE, Values, lint, render } from '../support/chart';
import { parseSamples } from '../support/prometheus-text';
import { PromqlNames, promqlNames, tokenize, variableQueryNames } from '../support/promql-names';
import { countTimedRequest } from '../support/timed-request';

/*
 * The Grafana dashboard the chart ships (charts/vduse-csi/dashboards/vduse-csi.json, also in the
 * ConfigMap <release>-dashboard): valid JSON Grafana can load, every query correct PromQL
 * (promtool) naming only metrics and labels the exporters really export (their registries, built
 * here as the device daemon and the plugins build them), and returning series when Prometheus is
 * fed those exporters' samples (promtool test rules).
 */

const DASHBOARD_FILE = join(CHART_DIR, 'dashboards', 'vduse-csi.json');
const DATASOURCE = { type: 'prometheus', uid: '${datasource}' };
/** Labels Prometheus gives every series of a scrape target. */
const TARGET_LABELS = ['job', 'instance'];

/* eslint-disable @typescript-eslint/no-explicit-any */
type Json = Record<string, any>;
/* eslint-enable @typescript-eslint/no-explicit-any */

interface Target {
  panel: string;
  refId: string;
  expr: string;
  legendFormat?: string;
}

function readDashboard(): Json {
  return JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8'));
}

/** Every panel, those of collapsed rows included; rows themselves too. */
function panelsOf(dashboard: Json): Json[] {
  return (dashboard.panels as Json[]).flatMap((panel) => [panel, ...((panel.panels as Json[]) ?? [])]);
}

function targetsOf(dashboard: Json): Target[] {
  return panelsOf(dashboard)
    .filter((panel) => panel.type !== 'row')
    .flatMap((panel) =>
      (panel.targets as Json[]).map((target) => ({
        panel: `${panel.title} ${target.refId}`,
        refId: target.refId,
        expr: target.expr,
        legendFormat: target.legendFormat,
      })),
    );
}

/** The query of a variable of type query, as Grafana saves it (an object) or as older ones did. */
function variableQuery(variable: Json): string {
  return typeof variable.query === 'string' ? variable.query : variable.query.query;
}

function queryVariables(dashboard: Json): Json[] {
  return (dashboard.templating.list as Json[]).filter((variable) => variable.type === 'query');
}

/** What one sample name of an exposition is, and the labels its samples carry. */
interface Exported {
  family: string;
  type: string;
  exporter: string;
  /** Whether the test's fake sources gave it a sample (else its labels are not known). */
  sampled: boolean;
  /** Label names of its samples. */
  labels: Set<string>;
}

/** The volume both the daemon (its device) and the node plugin (staged) know. */
const VOLUME_ID = `vol-${'0a1b2c'.repeat(5)}00`;

/** A device daemon's registry, as src/cli/daemon.ts builds it, serving one device. */
async function daemonRegistry(): Promise<Registry> {
  const registry = processRegistry();
  const counters = IoCounters.create(1);
  const queue = counters.queue(0);
  countTimedRequest(queue, 0, 4096, true, 0.0003); // a read
  countTimedRequest(queue, 1, 8192, true, 0.002); // a write
  countTimedRequest(queue, 1, 512, false, 0.01); // a failed write
  queue.inFlight = 1;
  registerDaemonFootprint(registry, () => [{ process: 'daemon', pid: process.pid }]);
  const metrics = registerDaemonMetrics(registry, {
    role: () => 'serving',
    devices: () => [{ name: VOLUME_ID, capacityBytes: 1 << 30, io: counters.totals(), pausedSeconds: 1.5 }],
  });
  metrics.request('add', 'ok', 0.02);
  metrics.request('add', 'ALREADY_EXISTS', 0.001);
  metrics.tookOver(1, 0.15);
  return registry;
}

/**
 * A plugin's registry in mode all, as src/cli/plugin.ts builds it, after two CSI calls, with the
 * daemon's device staged for a claim, and a takeover of it reported.
 */
async function pluginRegistry(): Promise<Registry> {
  const registry = processRegistry();
  const countEvent = registerNodeVolumeMetrics(registry, () => [
    { volumeId: VOLUME_ID, claim: { name: 'data', namespace: 'apps', volumeName: 'pvc-0a1b' } },
  ]);
  countEvent({
    volumeId: VOLUME_ID,
    claim: { name: 'data', namespace: 'apps' },
    pods: [],
    type: 'Warning',
    reason: 'DeviceTakenOver',
    message: 'taken over',
    count: 1,
  });
  const observe = csiCallMetrics(registry);
  observe('CreateVolume', 'OK', 0.4);
  observe('NodeStageVolume', 'INVALID_ARGUMENT', 0.002);
  registerControllerMetrics(registry, {
    inventory: {
      phases: ['Pending', 'Ready'],
      volumes: async () => [{ nodeId: 'node-a', phase: 'Ready', bytes: 1 << 30 }],
      snapshots: async () => [{ nodeId: 'node-a', phase: 'Ready', bytes: 1 << 30 }],
    },
    placement: { roomsIn: async () => [{ node: 'node-a', roomBytes: 1 << 34 }] },
  });
  return registry;
}

/** The sample names a family of this type is exposed as. */
function sampleNames(name: string, type: string): string[] {
  switch (type) {
    case 'histogram':
      return [`${name}_bucket`, `${name}_sum`, `${name}_count`];
    case 'summary':
      return [name, `${name}_sum`, `${name}_count`];
    case 'counter':
    case 'gauge':
      return [name];
    default:
      throw new Error(`${name}: metric type ${type}`);
  }
}

async function exportedBy(registries: Record<string, Registry>): Promise<Map<string, Exported>> {
  const exported = new Map<string, Exported>();
  for (const [exporter, registry] of Object.entries(registries)) {
    for (const metric of await registry.getMetricsAsJSON()) {
      for (const name of sampleNames(metric.name, metric.type as unknown as string)) {
        if (!exported.has(name))
          exported.set(name, {
            family: metric.name,
            type: String(metric.type),
            exporter,
            sampled: false,
            labels: new Set(),
          });
      }
      for (const value of metric.values as Array<{ metricName?: string; labels: object }>) {
        const entry = exported.get(value.metricName ?? metric.name);
        assert.ok(entry, `${metric.name}: a sample named ${value.metricName}`);
        entry.sampled = true;
        for (const label of Object.keys(value.labels)) entry.labels.add(label);
      }
    }
  }
  return exported;
}

/** Grafana's built-in interval variables, as the promtool checks below fill them in. */
const BUILTINS: Record<string, string> = {
  __rate_interval: '1m',
  __interval: '30s',
  __range: '10m',
};

/** The expression with every Grafana variable replaced: builtins by durations, ours by their "All". */
function substituted(expr: string, dashboard: Json): string {
  const all = new Map<string, string>(
    queryVariables(dashboard).map((variable) => [variable.name, variable.allValue]),
  );
  return expr.replace(/\$\{([A-Za-z0-9_]+)(?::[A-Za-z0-9_]+)?\}|\$([A-Za-z0-9_]+)/g, (text, braced, bare) => {
    const name: string = braced ?? bare;
    const value = BUILTINS[name] ?? all.get(name);
    if (value === undefined) throw new Error(`${expr}: no variable ${text}`);
    return value;
  });
}

function promtool(args: string[], files: Record<string, string>): { status: number; output: string } {
  const directory = mkdtempSync(join(tmpdir(), 'vduse-csi-dashboard-'));
  try {
    for (const [name, text] of Object.entries(files)) writeFileSync(join(directory, name), text);
    const run = spawnSync('promtool', args, { cwd: directory, encoding: 'utf8' });
    if (run.error)
      throw new Error(`cannot run promtool (scripts/install-deps.sh installs it): ${run.error.message}`);
    return { status: run.status ?? -1, output: `${run.stdout}${run.stderr}` };
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

describe('the Grafana dashboard (charts/vduse-csi/dashboards/vduse-csi.json)', function () {
  this.timeout(120_000);

  describe('the PromQL name extractor', () => {
    it('finds metrics, selector labels and grouping labels, and nothing else', () => {
      const names = promqlNames(
        'histogram_quantile(0.99, sum by (device, le) (rate(a_seconds_bucket{instance=~"$instance", ' +
          'direction="read"}[$__rate_interval]))) / on (device) group_left(op) b_total offset 5m ' +
          '+ sum(rate(c_total[5m:1m])) without (x) and {__name__="d", e!~"f,g}"} > bool 2e-3',
      );
      assert.deepEqual(names.selectors, [
        { metric: 'a_seconds_bucket', labels: ['instance', 'direction'] },
        { metric: 'b_total', labels: [] },
        { metric: 'c_total', labels: [] },
        { metric: 'd', labels: ['e'] },
      ]);
      assert.deepEqual(names.groupingLabels, ['device', 'le', 'device', 'op', 'x']);
      assert.deepEqual(names.functions, ['histogram_quantile', 'sum', 'rate', 'sum', 'rate']);
      assert.deepEqual(promqlNames('up == 1').selectors, [{ metric: 'up', labels: [] }]);
      assert.deepEqual(promqlNames('SUM BY (job) (up)').groupingLabels, ['job']);
      assert.deepEqual(promqlNames('vector(1)').selectors, []);
      assert.deepEqual(variableQueryNames('label_values(up{job="x"}, instance)'), {
        names: { selectors: [{ metric: 'up', labels: ['job'] }], groupingLabels: [], functions: [] },
        label: 'instance',
      });
    });

    it('refuses what it does not know rather than skip it', () => {
      assert.throws(() => promqlNames('rated(x[5m])'), /unknown function rated/);
      assert.throws(() => promqlNames('sum(x'), /unbalanced \(/);
      assert.throws(() => promqlNames('x{a="b"'), /expected , or \}/);
      assert.throws(() => promqlNames('x{a=b}'), /quoted label value/);
      assert.throws(() => promqlNames('rate(x[y])'), /in a range/);
      assert.throws(() => promqlNames('sum by x (y)'), /without a label list/);
      assert.throws(() => tokenize('x ; y'), /unexpected ";"/);
      assert.throws(() => variableQueryNames('query_result(up)'), /label_values/);
    });
  });

  describe('the JSON', () => {
    const dashboard = readDashboard();

    it('is a dashboard Grafana loads: uid, title, schema version, no overlapping panels', () => {
      assert.equal(dashboard.uid, 'vduse-csi');
      assert.equal(dashboard.title, 'vduse-csi');
      assert.ok(dashboard.schemaVersion >= 36 && dashboard.schemaVersion <= 41, `${dashboard.schemaVersion}`);
      assert.equal(dashboard.id, null, "an id is the saving Grafana instance's own");
      assert.equal(dashboard.__inputs, undefined, 'the sidecar cannot fill in import inputs');
      const panels = panelsOf(dashboard);
      const ids = panels.map((panel) => panel.id);
      assert.equal(new Set(ids).size, ids.length, `panel ids ${ids}`);
      const taken = new Map<string, string>();
      for (const panel of panels) {
        const { x, y, w, h } = panel.gridPos;
        assert.ok(
          x >= 0 && w > 0 && x + w <= 24 && y >= 0 && h > 0,
          `${panel.title}: ${JSON.stringify(panel.gridPos)}`,
        );
        for (let row = y; row < y + h; row++)
          for (let column = x; column < x + w; column++) {
            const other = taken.get(`${row},${column}`);
            assert.equal(other, undefined, `${panel.title} overlaps ${other}`);
            taken.set(`${row},${column}`, panel.title);
          }
      }
    });

    it('a Prometheus data source variable, and device and instance variables, multi-valued with All', () => {
      const variables = dashboard.templating.list as Json[];
      const datasource = variables.find((variable) => variable.name === 'datasource');
      assert.equal(datasource?.type, 'datasource');
      assert.equal(datasource?.query, 'prometheus');
      const device = variables.find((variable) => variable.name === 'device');
      assert.match(variableQuery(device!), /^label_values\(vduse_csi_device_requests_total\{.*\}, device\)$/);
      for (const variable of queryVariables(dashboard)) {
        assert.deepEqual(variable.datasource, DATASOURCE, variable.name);
        assert.equal(variable.multi, true, variable.name);
        assert.equal(variable.includeAll, true, variable.name);
        assert.equal(variable.allValue, '.*', `${variable.name}: All matches every value`);
        assert.equal(variable.definition, variableQuery(variable), variable.name);
      }
    });

    it('every panel queries the chosen Prometheus data source, with at least one target', () => {
      const panels = panelsOf(dashboard).filter((panel) => panel.type !== 'row');
      assert.ok(panels.length >= 15, `${panels.length} panels`);
      for (const panel of panels) {
        assert.deepEqual(panel.datasource, DATASOURCE, panel.title);
        assert.ok(typeof panel.title === 'string' && panel.title !== '', JSON.stringify(panel.gridPos));
        assert.ok(Array.isArray(panel.targets) && panel.targets.length > 0, `${panel.title}: no target`);
        const refIds = (panel.targets as Json[]).map((target) => target.refId);
        assert.equal(new Set(refIds).size, refIds.length, `${panel.title}: refIds ${refIds}`);
        for (const target of panel.targets as Json[]) {
          assert.deepEqual(target.datasource ?? DATASOURCE, DATASOURCE, `${panel.title} ${target.refId}`);
          assert.ok(
            typeof target.expr === 'string' && target.expr.trim() !== '',
            `${panel.title} ${target.refId}`,
          );
        }
      }
    });
  });

  describe('its queries and the exporters', () => {
    const dashboard = readDashboard();
    let exported: Map<string, Exported>;
    let registries: Record<string, Registry>;

    before(async () => {
      registries = { 'device daemon': await daemonRegistry(), plugin: await pluginRegistry() };
      exported = await exportedBy(registries);
    });

    /** Every query of the dashboard (panels and variables), with what it names. */
    function queries(): Array<{ where: string; names: PromqlNames; legendFormat?: string; label?: string }> {
      return [
        ...targetsOf(dashboard).map(({ panel, expr, legendFormat }) => ({
          where: `panel ${panel}`,
          names: promqlNames(expr),
          legendFormat,
        })),
        ...queryVariables(dashboard).map((variable) => ({
          where: `variable ${variable.name}`,
          ...variableQueryNames(variableQuery(variable)),
        })),
      ];
    }

    it('every query names only metrics the device daemon or the plugins export', () => {
      const missing: string[] = [];
      for (const { where, names } of queries()) {
        assert.ok(names.selectors.length > 0, `${where}: no metric`);
        for (const { metric } of names.selectors) {
          if (metric === undefined) missing.push(`${where}: a selector without a metric name`);
          else if (!exported.has(metric)) missing.push(`${where}: ${metric}`);
        }
      }
      assert.deepEqual(missing, [], `not exported:\n${missing.join('\n')}`);
    });

    it("every label a query matches, groups by or shows in a legend is one of its metrics'", () => {
      const problems: string[] = [];
      for (const { where, names, legendFormat, label } of queries()) {
        const known = new Set(TARGET_LABELS);
        for (const { metric, labels } of names.selectors) {
          const entry = exported.get(metric ?? '');
          if (!entry) continue; // reported by the test above
          if (!entry.sampled) problems.push(`${where}: the test's fake sources give ${metric} no sample`);
          for (const name of entry.labels) known.add(name);
          for (const name of labels)
            if (!entry.labels.has(name) && !TARGET_LABELS.includes(name))
              problems.push(`${where}: ${metric} has no label ${name}`);
        }
        const used = [
          ...names.groupingLabels,
          ...[...(legendFormat ?? '').matchAll(/\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}/g)].map(
            (match) => match[1]!,
          ),
          ...(label === undefined ? [] : [label]),
        ];
        for (const name of new Set(used))
          if (!known.has(name)) problems.push(`${where}: no metric of it has label ${name}`);
      }
      assert.deepEqual(problems, [], problems.join('\n'));
    });

    it('every vduse_csi_ metric the exporters export is on the dashboard', () => {
      const shown = new Set(
        queries().flatMap(({ names }) =>
          names.selectors.map(({ metric }) => exported.get(metric ?? '')?.family ?? metric),
        ),
      );
      const families = new Set([...exported.values()].map((entry) => entry.family));
      const unshown = [...families].filter((family) => family.startsWith('vduse_csi_') && !shown.has(family));
      assert.deepEqual(unshown, [], 'a metric without a panel: add one to the dashboard');
    });

    it('every query is PromQL promtool accepts (Grafana variables filled in)', () => {
      const rules = targetsOf(dashboard).map(({ expr }, index) => ({
        record: `dashboard:query_${index}`,
        expr: substituted(expr, dashboard),
      }));
      for (const variable of queryVariables(dashboard)) {
        const selector = /^label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\)$/.exec(variableQuery(variable));
        if (selector)
          rules.push({
            record: `dashboard:variable_${variable.name}`,
            expr: substituted(selector[1]!, dashboard),
          });
      }
      const { status, output } = promtool(['check', 'rules', 'rules.yaml'], {
        'rules.yaml': stringify({ groups: [{ name: 'dashboard', rules }] }),
      });
      assert.equal(status, 0, output);
    });

    it("every query returns series from the exporters' samples (promtool test rules)", async () => {
      // What a Prometheus scraping one node's device daemon and the plugin would hold: every
      // sample of the expositions, with the target labels, counters growing, gauges steady.
      const targets: Record<string, Record<string, string>> = {
        'device daemon': { job: 'vduse-csi-device-daemon-metrics', instance: '10.0.0.1:9841' },
        plugin: { job: 'vduse-csi-node-metrics', instance: '10.0.0.1:9840' },
      };
      const inputSeries: Array<{ series: string; values: string }> = [];
      for (const [exporter, registry] of Object.entries(registries)) {
        for (const sample of parseSamples(await registry.metrics())) {
          const labels = { ...sample.labels, ...targets[exporter] };
          const series = `${sample.name}{${Object.entries(labels)
            .map(([key, value]) => `${key}=${JSON.stringify(value)}`)
            .join(',')}}`;
          const growing = /_(total|bucket|sum|count)$/.test(sample.name);
          const steady = /^-?[0-9]+(\.[0-9]+)?$/.test(String(sample.value)) ? String(sample.value) : '1';
          inputSeries.push({ series, values: growing ? '0+1x60' : `${steady}+0x60` });
        }
      }
      const tests: object[] = targetsOf(dashboard).map(({ expr }) => ({
        expr: `absent(${substituted(expr, dashboard)})`,
        eval_time: '10m',
        exp_samples: [],
      }));
      // The node plugin and the device daemon of a node both export process_* metrics: a panel
      // of the daemon's must keep the daemon's series alone.
      for (const { expr } of targetsOf(dashboard).filter(({ expr }) => /\bprocess_/.test(expr)))
        tests.push({
          expr: `count(${substituted(expr, dashboard)})`,
          eval_time: '10m',
          exp_samples: [{ labels: '{}', value: 1 }],
        });
      const { status, output } = promtool(['test', 'rules', 'test.yaml'], {
        'test.yaml': stringify({
          rule_files: [],
          evaluation_interval: '15s',
          tests: [{ interval: '15s', input_series: inputSeries, promql_expr_test: tests }],
        }),
      });
      assert.equal(status, 0, `a query returned nothing (absent() of it returned a sample):\n${output}`);
    });
  });

  describe('in the chart', () => {
    const dashboards = (objects: KubeObject[]): KubeObject[] =>
      objects.filter((object) => object.kind === 'ConfigMap' && object.metadata.name.endsWith('-dashboard'));

    it('a ConfigMap <release>-dashboard labelled grafana_dashboard: "1", holding the dashboard JSON', () => {
      const [map, ...others] = dashboards(render());
      assert.ok(map, 'no dashboard ConfigMap');
      assert.deepEqual(others, []);
      assert.equal(map.metadata.name, 'vduse-csi-dashboard');
      assert.equal(map.metadata.namespace, NAMESPACE);
      assert.equal(map.metadata.labels.grafana_dashboard, '1');
      assert.equal(map.metadata.labels['app.kubernetes.io/part-of'], 'vduse-csi');
      assert.deepEqual(Object.keys(map.data), ['vduse-csi.json']);
      assert.deepEqual(JSON.parse(map.data['vduse-csi.json']), readDashboard());
      // kubectl apply (client side) keeps the whole object in an annotation, at most 256 KiB.
      assert.ok(JSON.stringify(map).length < 200 * 1024, `${JSON.stringify(map).length} bytes`);
    });

    it('its labels, annotations and namespace from metrics.dashboard', () => {
      const [map] = dashboards(
        render({
          values: {
            metrics: {
              dashboard: {
                labels: { grafana_dashboard: null, dashboards: 'storage' },
                annotations: { grafana_folder: 'Storage' },
                namespace: 'monitoring',
              },
            },
          },
        }),
      );
      assert.equal(map?.metadata.namespace, 'monitoring');
      assert.equal(map.metadata.labels.dashboards, 'storage');
      assert.equal(map.metadata.labels.grafana_dashboard, undefined);
      assert.deepEqual(map.metadata.annotations, { grafana_folder: 'Storage' });
    });

    for (const [what, values] of [
      ['metrics.dashboard.enabled false', { metrics: { dashboard: { enabled: false } } }],
      ['metrics.enabled false', { metrics: { enabled: false } }],
    ] as Array<[string, Values]>) {
      it(`nothing with ${what}`, () => {
        assert.deepEqual(dashboards(render({ values })), []);
      });
    }

    it('values.schema.json refuses a misspelt dashboard key and a namespace that is not a DNS label', () => {
      for (const [values, mention] of [
        [{ metrics: { dashboard: { enable: false } } }, /enable/],
        [{ metrics: { dashboard: { namespace: 'Monitoring' } } }, /namespace/],
        [{ metrics: { dashboard: { labels: { grafana_dashboard: 1 } } } }, /grafana_dashboard/],
      ] as Array<[Values, RegExp]>) {
        const result = lint(values);
        assert.notEqual(result.status, 0, `helm lint accepted ${JSON.stringify(values)}`);
        assert.match(`${result.stdout}\n${result.stderr}`, mention);
      }
    });
  });
});
