/**
 * deploy/ against the code: every YAML/JSON file parses, and the manifests name only metrics the service
 * registers (read from a real createMetrics() registry), labels those metrics carry, route labels the HTTP
 * layer sets, environment variables in SETTINGS (and values loadConfig accepts), the port and paths the app
 * serves; the Dockerfiles install and test with the commands .ci/run runs. With promtool on PATH (Debian:
 * `apt-get install prometheus`), the alert rules are also loaded, unit-tested and the Prometheus config checked.
 *
 * Docker is not run here: this checks the Dockerfiles' text, not a built image.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { loadConfig, SETTINGS } from '../src/config.js';
import { createApp } from '../src/http/app.js';
import { ClassifierHost } from '../src/service/classifier-host.js';
import { createMetrics } from '../src/metrics/metrics.js';

const ROOT = resolve(import.meta.dirname, '..');
const DEPLOY = join(ROOT, 'deploy');
const d = (p: string) => join(DEPLOY, p);

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}
const FILES = walk(DEPLOY);
const rel = (p: string) => relative(ROOT, p);

/** All documents of a YAML file; throws naming the file and the first error. */
function yamlDocs(path: string): any[] {
  const docs = parseAllDocuments(readFileSync(path, 'utf8'));
  for (const doc of docs) if (doc.errors.length > 0) throw new Error(`${rel(path)}: ${doc.errors[0].message}`);
  return docs.map((doc) => doc.toJS());
}
const yaml1 = (p: string) => yamlDocs(d(p))[0];
const json = (p: string) => JSON.parse(readFileSync(d(p), 'utf8'));

// ---- what the code defines ------------------------------------------------------------------------

/** Exposed series name -> label names, from the service's real registry (process defaults included). */
async function exposedSeries(): Promise<Map<string, string[]>> {
  const { registry } = createMetrics();
  const out = new Map<string, string[]>();
  for (const metric of registry.getMetricsAsArray()) {
    // prom-client's metric objects (Counter, Gauge, Histogram, Summary) carry get() and labelNames
    const m = metric as unknown as { get(): Promise<{ type: string }>; labelNames?: string[] };
    const { type } = await m.get();
    const labels = [...(m.labelNames ?? [])];
    if (type === 'histogram') {
      out.set(`${metric.name}_bucket`, [...labels, 'le']);
      out.set(`${metric.name}_sum`, labels);
      out.set(`${metric.name}_count`, labels);
    } else if (type === 'summary') {
      out.set(metric.name, [...labels, 'quantile']);
      out.set(`${metric.name}_sum`, labels);
      out.set(`${metric.name}_count`, labels);
    } else out.set(metric.name, labels);
  }
  return out;
}

/** Route labels the HTTP layer records (the `route` label of the request metrics: each route's registered path). */
function routeLabels(): Set<string> {
  const app = createApp({ config: loadConfig({ cwd: '/' }), metrics: createMetrics({ processDefaults: false }), host: new ClassifierHost() });
  return new Set([...app.routes.filter((r) => r.method !== 'ALL').map((r) => r.path), 'unmatched']);
}

/** Labels Prometheus itself attaches (scrape target, Kubernetes relabelling in scrape-kubernetes.yml). */
const TARGET_LABELS = ['instance', 'job', 'namespace', 'pod'];

const SETTING_NAMES = new Set(SETTINGS.map((s) => s.env));
const DEFAULT_PORT = Number(SETTINGS.find((s) => s.env === 'PORT')!.default);
const DEFAULT_TOLERANCE = Number(SETTINGS.find((s) => s.env === 'TOXSCOPE_DRIFT_TOLERANCE')!.default);
const DEFAULT_MIN_LABELED = Number(SETTINGS.find((s) => s.env === 'TOXSCOPE_DRIFT_MIN_LABELED')!.default);
/** Non-ToxScope variables the service container may carry. */
const RUNTIME_ENV_EXTRAS = new Set(['NODE_ENV', 'NVIDIA_VISIBLE_DEVICES', 'NVIDIA_DRIVER_CAPABILITIES']);

// ---- PromQL sources ---------------------------------------------------------------------------------

interface Query {
  where: string;
  expr: string;
}

function promQueries(): Query[] {
  const out: Query[] = [];
  for (const group of yaml1('prometheus/alerts.yml').groups) for (const r of group.rules) out.push({ where: `alerts.yml ${r.alert}`, expr: r.expr });
  const dashboard = json('grafana/dashboards/toxscope.json');
  for (const p of dashboard.panels) for (const t of p.targets ?? []) out.push({ where: `dashboard "${p.title}"`, expr: t.expr });
  for (const r of yaml1('prometheus/adapter-rules.yml').rules) out.push({ where: 'adapter-rules.yml', expr: r.seriesQuery });
  return out;
}

const metricNames = (expr: string) => [...expr.matchAll(/\b(toxscope_[a-z0-9_]+)/g)].map((m) => m[1]);

/** `name{label op "value", ...}` selectors of an expression. */
function selectors(expr: string): { metric: string; matchers: { label: string; op: string; value: string }[] }[] {
  return [...expr.matchAll(/\b([a-z_][a-z0-9_]*)\{([^}]*)\}/g)].map((m) => ({
    metric: m[1],
    matchers: [...m[2].matchAll(/([a-z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"/g)].map((x) => ({ label: x[1], op: x[2], value: x[3] })),
  }));
}

// ---- Dockerfiles ------------------------------------------------------------------------------------

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  from: string;
  name: string;
  steps: Instruction[];
}

/** Stages of a Dockerfile: continuation lines joined, comments dropped, ARG defaults substituted in FROM. */
function dockerStages(path: string): Stage[] {
  const lines = readFileSync(path, 'utf8').replace(/\\\n/g, ' ').split('\n');
  const args = new Map<string, string>();
  const stages: Stage[] = [];
  for (const raw of lines) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const [, op, rest] = /^(\S+)\s+(.*)$/.exec(line) ?? [];
    if (!op) throw new Error(`${rel(path)}: cannot read line '${line}'`);
    const upper = op.toUpperCase();
    if (upper === 'ARG' && stages.length === 0) {
      const [k, v] = rest.split('=');
      args.set(k, v ?? '');
    } else if (upper === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest)!;
      const from = m[1].replace(/\$\{(\w+)\}/g, (_, k: string) => args.get(k) ?? '');
      stages.push({ from, name: m[2] ?? String(stages.length), steps: [] });
    } else {
      if (stages.length === 0) throw new Error(`${rel(path)}: '${op}' before the first FROM`);
      stages.at(-1)!.steps.push({ op: upper, args: rest.replace(/\s+/g, ' ').trim() });
    }
  }
  return stages;
}

/** ENV instructions (KEY=VALUE pairs, quoted or not) of one stage. */
function stageEnv(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const s of stage.steps.filter((s) => s.op === 'ENV'))
    for (const m of s.args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("([^"]*)"|\S+)/g)) env[m[1]] = m[3] ?? m[2];
  return env;
}

/** .ci/run's install and test commands. */
function ciCommands(): { installEnv: string; install: string; test: string } {
  const lines = readFileSync(join(ROOT, '.ci', 'run'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const installEnv = lines.find((l) => /^export ONNXRUNTIME_NODE_INSTALL=/.test(l));
  const install = lines.find((l) => /^npm ci\b/.test(l));
  const test = lines.filter((l) => /^npm (test|run test)\b/.test(l)).at(-1);
  if (!installEnv || !install || !test) throw new Error(`.ci/run: expected an 'export ONNXRUNTIME_NODE_INSTALL=', an 'npm ci' and an 'npm test' line`);
  return { installEnv: installEnv.replace(/^export /, ''), install, test };
}

const DOCKERFILES = { cpu: d('Dockerfile.cpu'), cuda: d('Dockerfile.cuda') };

// ---- Kubernetes -------------------------------------------------------------------------------------

function k8sObjects(): { file: string; obj: any }[] {
  return FILES.filter((f) => f.startsWith(d('k8s')) && /\.ya?ml$/.test(f) && !f.endsWith('kustomization.yaml')).flatMap((file) =>
    yamlDocs(file).map((obj) => ({ file: rel(file), obj })),
  );
}
const DEPLOYMENTS = { cpu: 'k8s/deployment.yaml', cuda: 'k8s/cuda/deployment.yaml' };
const container = (deployment: any) => deployment.spec.template.spec.containers.find((c: any) => c.name === 'toxscope');

/** The environment a Deployment's toxscope container gets: ConfigMap (envFrom) + env, secrets from secret.yaml. */
function deploymentEnv(deployment: any): Record<string, string> {
  const configMap = yaml1('k8s/configmap.yaml');
  const secret = yaml1('k8s/secret.yaml');
  const c = container(deployment);
  const env: Record<string, string> = {};
  for (const from of c.envFrom ?? []) {
    expect(from.configMapRef?.name, 'envFrom names the ConfigMap of configmap.yaml').toBe(configMap.metadata.name);
    Object.assign(env, configMap.data);
  }
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env[e.name] = String(e.value);
    else if (e.valueFrom?.secretKeyRef) {
      const ref = e.valueFrom.secretKeyRef;
      expect(ref.name, `${e.name}: the Secret of secret.yaml`).toBe(secret.metadata.name);
      expect(Object.keys(secret.stringData), `${e.name}: key '${ref.key}' in secret.yaml`).toContain(ref.key);
      env[e.name] = secret.stringData[ref.key];
    } else throw new Error(`${e.name}: unsupported env source ${JSON.stringify(e)}`);
  }
  return env;
}

/** compose environment with ${VAR:-default} replaced by its default. */
function composeEnv(): Record<string, string> {
  const env = yaml1('compose.yaml').services.toxscope.environment as Record<string, string>;
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v).replace(/\$\{\w+:-([^}]*)\}/g, '$1')]));
}

// ---- the tests ---------------------------------------------------------------------------------------

describe('every file under deploy/ parses', () => {
  const parseable = FILES.filter((f) => /\.(ya?ml|json)$/.test(f));
  it('has the expected files', () => {
    for (const p of ['Dockerfile.cpu', 'Dockerfile.cuda', 'compose.yaml', 'prometheus/alerts.yml', 'prometheus/prometheus.yml', 'grafana/dashboards/toxscope.json', DEPLOYMENTS.cpu, DEPLOYMENTS.cuda])
      expect(existsSync(d(p)), p).toBe(true);
    expect(parseable.length).toBeGreaterThan(10);
  });
  it.each(parseable.map((f) => [rel(f)]))('%s', (file) => {
    const path = join(ROOT, file);
    const docs = file.endsWith('.json') ? [JSON.parse(readFileSync(path, 'utf8'))] : yamlDocs(path);
    expect(docs.length).toBeGreaterThan(0);
    for (const doc of docs) expect(doc, file).toBeTypeOf('object');
  });
});

describe('metrics in alert rules, dashboard and adapter rules', () => {
  it('name only series the service registers, with labels those series carry', async () => {
    const series = await exposedSeries();
    const queries = promQueries();
    expect(queries.length).toBeGreaterThan(20);
    const problems: string[] = [];
    for (const q of queries) {
      for (const name of metricNames(q.expr)) if (!series.has(name)) problems.push(`${q.where}: ${name} is not registered by createMetrics()`);
      for (const sel of selectors(q.expr)) {
        const known = sel.metric === 'up' ? [] : series.get(sel.metric);
        if (!known) continue;
        for (const m of sel.matchers)
          if (!known.includes(m.label) && !TARGET_LABELS.includes(m.label)) problems.push(`${q.where}: ${sel.metric} has no label '${m.label}' (it has: ${known.join(', ') || 'none'})`);
      }
      for (const by of q.expr.matchAll(/\bby\s*\(([^)]*)\)/g)) {
        const used = metricNames(q.expr).flatMap((n) => series.get(n) ?? []);
        for (const label of by[1].split(',').map((s) => s.trim()).filter(Boolean))
          if (!used.includes(label) && !TARGET_LABELS.includes(label)) problems.push(`${q.where}: grouping by '${label}', which none of its metrics carries`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('compare route labels only with routes the HTTP layer labels', () => {
    const routes = routeLabels();
    expect(routes.has('/v1/classify') && routes.has('/readyz')).toBe(true);
    const problems: string[] = [];
    for (const q of promQueries()) {
      for (const sel of selectors(q.expr)) {
        for (const m of sel.matchers.filter((x) => x.label === 'route')) {
          if (m.op === '=' || m.op === '!=') {
            if (!routes.has(m.value)) problems.push(`${q.where}: route="${m.value}" is not a route label`);
          } else {
            // each alternative must match at least one real route label (Prometheus anchors regexes)
            for (const alt of m.value.split('|')) {
              const re = new RegExp(`^(?:${alt})$`);
              if (![...routes].some((r) => re.test(r))) problems.push(`${q.where}: route=~ alternative '${alt}' matches no route label`);
            }
          }
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('use the label values the service records (status codes as strings, predictions toxic/non_toxic)', () => {
    const classifier = readFileSync(join(ROOT, 'src', 'engine', 'classifier.ts'), 'utf8');
    const labelValues = [...classifier.matchAll(/label: s\.toxic \? '(\w+)' : '(\w+)'/g)].flatMap((m) => [m[1], m[2]]);
    expect(labelValues).toEqual(['toxic', 'non_toxic']);
    for (const q of promQueries())
      for (const sel of selectors(q.expr)) {
        for (const m of sel.matchers) {
          if (m.label === 'status') expect(m.value, q.where).toMatch(/^[1-5][0-9]{2}$/);
          if (sel.metric === 'toxscope_predictions_total' && m.label === 'label') expect(labelValues, q.where).toContain(m.value);
        }
      }
  });

  it('alert on drift with the service defaults for tolerance and minimum labeled count', () => {
    const rules = yaml1('prometheus/alerts.yml').groups.flatMap((g: any) => g.rules);
    const drift = rules.find((r: any) => r.alert === 'ToxScopeF1Drift');
    expect(drift.expr).toMatch(/toxscope_f1_drift/);
    expect(drift.expr).toContain(`> ${DEFAULT_TOLERANCE}`);
    expect(drift.expr).toContain(`>= ${DEFAULT_MIN_LABELED}`);
    expect(rules.map((r: any) => r.alert).sort()).toEqual(['ToxScopeDatabaseDown', 'ToxScopeDown', 'ToxScopeF1Drift', 'ToxScopeNotReady', 'ToxScopeP99LatencyHigh', 'ToxScopeSustained429', 'ToxScopeWriteJournalFilling', 'ToxScopeWritesDropped']);
    const p99 = rules.find((r: any) => r.alert === 'ToxScopeP99LatencyHigh');
    expect(p99.expr).toMatch(/histogram_quantile\(0\.99,[\s\S]*toxscope_http_request_duration_seconds_bucket/);
  });

  it('Grafana: the dashboard uses the provisioned datasource, and the provider loads the mounted folder', () => {
    const uid = yaml1('grafana/provisioning/datasources/prometheus.yml').datasources[0].uid;
    const dashboard = json('grafana/dashboards/toxscope.json');
    for (const p of dashboard.panels.filter((x: any) => x.type !== 'row')) {
      expect(p.datasource?.uid, p.title).toBe(uid);
      for (const t of p.targets) expect(t.datasource?.uid, p.title).toBe(uid);
    }
    const providerPath = yaml1('grafana/provisioning/dashboards/toxscope.yml').providers[0].options.path;
    const grafana = yaml1('compose.yaml').services.grafana;
    expect(grafana.volumes).toContain(`./grafana/dashboards:${providerPath}:ro`);
    expect(grafana.environment.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH).toBe(`${providerPath}/toxscope.json`);
  });
});

describe('environment variables', () => {
  it('every TOXSCOPE_* named anywhere under deploy/ is a setting of src/config.ts', () => {
    const unknown = FILES.flatMap((f) => [...readFileSync(f, 'utf8').matchAll(/\bTOXSCOPE_[A-Z0-9_]+\b/g)].map((m) => `${rel(f)}: ${m[0]}`)).filter(
      (s) => !SETTING_NAMES.has(s.split(': ')[1]),
    );
    expect(unknown).toEqual([]);
  });

  const cases: [string, () => Record<string, string>][] = [
    ['compose toxscope service', composeEnv],
    ['k8s deployment (cpu)', () => deploymentEnv(yaml1(DEPLOYMENTS.cpu))],
    ['k8s deployment (cuda)', () => deploymentEnv(yaml1(DEPLOYMENTS.cuda))],
    ['Dockerfile.cpu runtime stage', () => stageEnv(dockerStages(DOCKERFILES.cpu).at(-1)!)],
    ['Dockerfile.cuda runtime stage', () => stageEnv(dockerStages(DOCKERFILES.cuda).at(-1)!)],
  ];
  it.each(cases)('%s: only known variables, with values loadConfig accepts', (_, envOf) => {
    const env = envOf();
    expect(Object.keys(env).filter((k) => !SETTING_NAMES.has(k) && !RUNTIME_ENV_EXTRAS.has(k))).toEqual([]);
    const config = loadConfig({ env, cwd: '/' });
    expect(config.port).toBe(DEFAULT_PORT);
    expect(config.dataDir).toBe('/var/lib/toxscope');
  });

  it('the CUDA variants ask for the cuda provider, the CPU ones for cpu', () => {
    expect(loadConfig({ env: deploymentEnv(yaml1(DEPLOYMENTS.cuda)) }).executionProvider).toBe('cuda');
    expect(loadConfig({ env: deploymentEnv(yaml1(DEPLOYMENTS.cpu)) }).executionProvider).toBe('cpu');
    expect(stageEnv(dockerStages(DOCKERFILES.cuda).at(-1)!).TOXSCOPE_EXECUTION_PROVIDER).toBe('cuda');
    expect(stageEnv(dockerStages(DOCKERFILES.cpu).at(-1)!).TOXSCOPE_EXECUTION_PROVIDER).toBe('cpu');
  });
});

describe('ports, paths and volumes', () => {
  const app = () => createApp({ config: loadConfig({ cwd: '/' }), metrics: createMetrics({ processDefaults: false }), host: new ClassifierHost() });

  it('the probe and scrape paths are routes of the app: /healthz 200, /readyz 503 before warm-up, /metrics text', async () => {
    const a = app();
    const k8s = [yaml1(DEPLOYMENTS.cpu), yaml1(DEPLOYMENTS.cuda)].map(container);
    const paths = new Set<string>([
      ...k8s.flatMap((c) => [c.startupProbe, c.readinessProbe, c.livenessProbe].map((p: any) => p.httpGet.path)),
      ...yaml1('prometheus/prometheus.yml').scrape_configs.map((s: any) => s.metrics_path),
      ...yaml1('prometheus/scrape-kubernetes.yml').scrape_configs.map((s: any) => s.metrics_path),
    ]);
    for (const df of Object.values(DOCKERFILES)) {
      const hc = dockerStages(df).at(-1)!.steps.find((s) => s.op === 'HEALTHCHECK');
      paths.add(/\/[a-z]+'\)/.exec(hc!.args)![0].slice(0, -2));
    }
    paths.add(/\/[a-z]+'\)/.exec(yaml1('compose.yaml').services.toxscope.healthcheck.test.join(' '))![0].slice(0, -2));
    expect([...paths].sort()).toEqual(['/healthz', '/metrics', '/readyz']);
    const routes = new Set(a.routes.filter((r) => r.method === 'GET').map((r) => r.path));
    for (const p of paths) expect(routes, p).toContain(p);
    expect((await a.request('/healthz')).status).toBe(200);
    expect((await a.request('/readyz')).status).toBe(503);
    expect(await (await a.request('/metrics')).text()).toContain('toxscope_http_requests_total');
    for (const c of k8s) {
      expect(c.readinessProbe.httpGet.path).toBe('/readyz');
      expect(c.livenessProbe.httpGet.path).toBe('/healthz');
      // 15 minutes for a first start (graph build; demo bundle build without TOXSCOPE_BUNDLE)
      expect(c.startupProbe.periodSeconds * c.startupProbe.failureThreshold).toBeGreaterThanOrEqual(600);
    }
  });

  it('every port is the service port (PORT, default 8080)', () => {
    const ports: [string, number][] = [];
    for (const [variant, file] of Object.entries(DEPLOYMENTS)) {
      const dep = yaml1(file);
      const c = container(dep);
      ports.push([`${variant} containerPort`, c.ports.find((p: any) => p.name === 'http').containerPort]);
      ports.push([`${variant} annotation`, Number(dep.spec.template.metadata.annotations['prometheus.io/port'])]);
      for (const probe of [c.startupProbe, c.readinessProbe, c.livenessProbe]) expect(probe.httpGet.port).toBe('http');
    }
    const service = yaml1('k8s/service.yaml');
    expect(service.spec.ports[0].targetPort).toBe('http');
    for (const df of Object.values(DOCKERFILES)) {
      const runtime = dockerStages(df).at(-1)!;
      ports.push([`${rel(df)} EXPOSE`, Number(runtime.steps.find((s) => s.op === 'EXPOSE')!.args)]);
    }
    const compose = yaml1('compose.yaml').services.toxscope;
    ports.push(['compose ports', Number(compose.ports[0].split(':')[1])]);
    ports.push(['compose healthcheck', Number(/127\.0\.0\.1:(\d+)/.exec(compose.healthcheck.test.join(' '))![1])]);
    ports.push(['prometheus target', Number(yaml1('prometheus/prometheus.yml').scrape_configs[0].static_configs[0].targets[0].split(':')[1])]);
    ports.push(['configmap PORT', Number(yaml1('k8s/configmap.yaml').data.PORT)]);
    expect(ports.filter(([, p]) => p !== DEFAULT_PORT)).toEqual([]);
  });

  it('the data directory and the bundle are volumes where the settings point', () => {
    const configMap = yaml1('k8s/configmap.yaml').data;
    for (const file of Object.values(DEPLOYMENTS)) {
      const dep = yaml1(file);
      const mounts = Object.fromEntries(container(dep).volumeMounts.map((m: any) => [m.mountPath, m]));
      expect(mounts[configMap.TOXSCOPE_DATA_DIR], file).toBeDefined();
      expect(mounts[configMap.TOXSCOPE_BUNDLE]?.readOnly, file).toBe(true);
      const bundle = dep.spec.template.spec.volumes.find((v: any) => v.name === mounts[configMap.TOXSCOPE_BUNDLE].name);
      expect(bundle.persistentVolumeClaim.claimName).toBe(yaml1('k8s/pvc.yaml').metadata.name);
    }
    for (const df of Object.values(DOCKERFILES)) {
      const runtime = dockerStages(df).at(-1)!;
      const volumes = JSON.parse(runtime.steps.find((s) => s.op === 'VOLUME')!.args) as string[];
      expect(volumes).toContain(stageEnv(runtime).TOXSCOPE_DATA_DIR);
      expect(volumes).toContain(configMap.TOXSCOPE_BUNDLE);
    }
    const compose = yaml1('compose.yaml').services.toxscope;
    expect(compose.volumes).toContain(`toxscope-data:${compose.environment.TOXSCOPE_DATA_DIR}`);
  });

  it('Kubernetes objects agree on names and labels; kustomizations list existing files', () => {
    const objects = k8sObjects();
    const byKind = (kind: string) => objects.filter((o) => o.obj.kind === kind);
    for (const { obj } of byKind('Deployment')) {
      const podLabels = obj.spec.template.metadata.labels;
      for (const [k, v] of Object.entries(obj.spec.selector.matchLabels)) expect(podLabels[k]).toBe(v);
      for (const { obj: svc } of byKind('Service')) for (const [k, v] of Object.entries(svc.spec.selector)) expect(podLabels[k]).toBe(v);
      for (const { obj: pdb } of byKind('PodDisruptionBudget')) for (const [k, v] of Object.entries(pdb.spec.selector.matchLabels)) expect(podLabels[k]).toBe(v);
      for (const { obj: hpa } of byKind('HorizontalPodAutoscaler')) expect(hpa.spec.scaleTargetRef).toMatchObject({ kind: 'Deployment', name: obj.metadata.name });
      expect(obj.spec.template.spec.securityContext.runAsNonRoot).toBe(true);
    }
    const gpu = container(yaml1(DEPLOYMENTS.cuda)).resources;
    expect(gpu.requests['nvidia.com/gpu']).toBe(1);
    expect(gpu.limits['nvidia.com/gpu']).toBe(1);
    expect(container(yaml1(DEPLOYMENTS.cpu)).resources.requests['nvidia.com/gpu']).toBeUndefined();
    const queueHpa = yaml1('k8s/hpa-queue-depth.yaml');
    expect(queueHpa.spec.metrics[0].pods.metric.name).toBe('toxscope_queue_depth');
    for (const k of ['k8s/kustomization.yaml', 'k8s/cuda/kustomization.yaml']) {
      const resources: string[] = yaml1(k).resources;
      for (const r of resources) expect(existsSync(resolve(dirname(d(k)), r)), `${k}: ${r}`).toBe(true);
      expect(resources.some((r) => r.endsWith('deployment.yaml'))).toBe(true);
    }
  });

  it('files the compose stack and Prometheus mount or load exist', () => {
    const compose = yaml1('compose.yaml');
    for (const svc of Object.values<any>(compose.services))
      for (const v of svc.volumes ?? []) {
        const src = String(v).split(':')[0];
        if (src.startsWith('.')) expect(existsSync(resolve(DEPLOY, src)), `compose volume ${v}`).toBe(true);
      }
    expect(existsSync(resolve(DEPLOY, compose.services.toxscope.build.context, compose.services.toxscope.build.dockerfile))).toBe(true);
    for (const f of yaml1('prometheus/prometheus.yml').rule_files) expect(existsSync(d(join('prometheus', f))), f).toBe(true);
  });
});

describe('Dockerfiles', () => {
  const ci = ciCommands();

  it.each(Object.entries(DOCKERFILES))('%s: installs and tests with .ci/run\'s commands', (_, file) => {
    const stages = dockerStages(file);
    const installStage = stages.find((s) => s.steps.some((x) => x.op === 'RUN' && x.args === ci.install));
    expect(installStage, `a stage running '${ci.install}'`).toBeDefined();
    const steps = installStage!.steps;
    const envAt = steps.findIndex((x) => x.op === 'ENV' && x.args === ci.installEnv);
    const runAt = steps.findIndex((x) => x.op === 'RUN' && x.args === ci.install);
    expect(envAt, `'ENV ${ci.installEnv}' before '${ci.install}'`).toBeGreaterThanOrEqual(0);
    expect(envAt).toBeLessThan(runAt);
    const test = stages.find((s) => s.name === 'test');
    expect(test?.steps.filter((x) => x.op === 'RUN').map((x) => x.args)).toEqual([ci.test]);
    // the test stage builds on the installed dependencies
    expect(test!.from).toBe(installStage!.name);
  });

  it.each(Object.entries(DOCKERFILES))('%s: multi-stage, non-root runtime with a health check on /healthz and the serve command', (_, file) => {
    const stages = dockerStages(file);
    expect(stages.length).toBeGreaterThanOrEqual(3);
    const runtime = stages.at(-1)!;
    const user = runtime.steps.filter((s) => s.op === 'USER').at(-1)?.args;
    expect(user).toBeDefined();
    expect(user!.split(':')[0]).not.toMatch(/^(root|0)$/);
    expect(runtime.steps.find((s) => s.op === 'HEALTHCHECK')?.args).toMatch(/\/healthz/);
    const cmd = JSON.parse(runtime.steps.find((s) => s.op === 'CMD')!.args) as string[];
    expect(cmd).toEqual(['node', 'bin/toxscope.js', 'serve']);
    // every path the runtime stage copies from the build context exists
    for (const s of runtime.steps.filter((x) => x.op === 'COPY' && !x.args.startsWith('--from')))
      for (const src of s.args.split(' ').slice(0, -1)) expect(existsSync(join(ROOT, src)), `${rel(file)}: COPY ${src}`).toBe(true);
    // Node of the image satisfies package.json's engines
    const engines = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).engines.node as string;
    const nodeImage = stages.find((s) => s.from.startsWith('node:'))!.from;
    expect(Number(/^node:(\d+)/.exec(nodeImage)![1])).toBeGreaterThanOrEqual(Number(/\d+/.exec(engines)![0]));
  });

  it('Dockerfile.cuda: nvidia/cuda runtime base and onnxruntime-node\'s own install script for the CUDA provider', () => {
    const stages = dockerStages(DOCKERFILES.cuda);
    expect(stages.at(-1)!.from).toMatch(/^nvidia\/cuda:12\.[0-9.]+-cudnn-runtime-/);
    const run = stages.flatMap((s) => s.steps).find((s) => s.op === 'RUN' && s.args.includes('onnxruntime-node/script/install'))!;
    const script = /node (node_modules\/onnxruntime-node\/script\/install)/.exec(run.args)![1];
    expect(existsSync(join(ROOT, `${script}.js`))).toBe(true);
    // the flag value and the file the step checks for are what the installed version's metadata defines
    const require = createRequire(import.meta.url);
    const metadata = require(join(ROOT, 'node_modules/onnxruntime-node/script/install-metadata.js'));
    const flag = /ONNXRUNTIME_NODE_INSTALL=(\S+)/.exec(run.args)![1];
    expect(metadata.requirements['linux/x64']).toContain(flag);
    const expected = /test -f node_modules\/onnxruntime-node\/bin\/napi-v6\/linux\/x64\/(\S+)/.exec(run.args)![1];
    expect(Object.keys(metadata.manifests[`linux/x64:${flag}`])).toContain(`./${expected}`);
    expect(stages.some((s) => s.steps.some((x) => x.op === 'COPY' && x.args === '--from=node /usr/local/bin/node /usr/local/bin/node'))).toBe(true);
  });

  it('the image command starts: `node bin/toxscope.js serve --help` lists the settings', () => {
    const r = spawnSync(process.execPath, ['bin/toxscope.js', 'serve', '--help'], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const out = r.stdout + r.stderr;
    for (const s of SETTINGS) expect(out).toContain(s.env);
  });
});

const promtool = spawnSync('promtool', ['--version']).status === 0;

describe.skipIf(!promtool)('promtool (Debian package prometheus)', () => {
  const run = (...args: string[]) => execFileSync('promtool', args, { cwd: d('prometheus'), encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

  it('loads the alert rules', () => {
    expect(run('check', 'rules', 'alerts.yml')).toMatch(/SUCCESS: 8 rules found/);
  });
  it('accepts the compose Prometheus config (and the rule file it names)', () => {
    expect(run('check', 'config', 'prometheus.yml')).toMatch(/SUCCESS/);
  });
  it('passes the rules\' unit tests: each alert fires on its bad series and not on the good ones', () => {
    expect(run('test', 'rules', 'alerts.test.yml')).toMatch(/SUCCESS/);
  });
});
