//! Offline checks of the operations files under `docker/`: Prometheus config, alert rules and the
//! metrics text (promtool), metric names in the dashboard and alerts against what pgshroud
//! exports, the Kubernetes manifests (kubernetes-validate and cross-references), the compose file.
//!
//! Tools: `promtool` (Debian package `prometheus`), `kubernetes-validate` (PyPI), `python3` with
//! PyYAML. A missing tool skips its test with a notice, except under `CI`, where it fails.

use std::collections::BTreeSet;
use std::future::Future;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgshroud::config::{ConfigLayer, Settings};
use pgshroud::ops::admin::{self, Readiness};
use pgshroud::ops::metrics::{
    AlertKind, ConnectionErrorReason, CryptoOp, Direction, Metrics, ProtectedValueAction,
    RefusalReason, ReloadResult, StatementKind, StatementOutcome,
};

const PROMTOOL_INSTALL: &str = "apt-get install -y prometheus";
const KUBERNETES_VALIDATE_INSTALL: &str = "pip install kubernetes-validate==1.37.0";
const PYYAML_INSTALL: &str = "pip install PyYAML (kubernetes-validate brings it)";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration-tests lives in the workspace root")
        .to_path_buf()
}

fn docker(path: &str) -> PathBuf {
    repo_root().join("docker").join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Whether a missing tool fails the test (in CI) or skips it (on a developer's machine).
fn missing(name: &str, install: &str) -> Option<PathBuf> {
    if std::env::var_os("CI").is_some() {
        panic!("{name} is required when CI is set; install it with: {install}");
    }
    // Written to the real stderr: libtest would capture `eprintln!` of a passing test.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {name} not found; install it with: {install}"
    );
    None
}

fn tool(name: &str, install: &str) -> Option<PathBuf> {
    on_path(name).or_else(|| missing(name, install))
}

/// `python3` that can `import yaml`.
fn python_with_yaml() -> Option<PathBuf> {
    let python = tool("python3", "apt-get install -y python3")?;
    let has_yaml = Command::new(&python)
        .args(["-c", "import yaml"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if has_yaml {
        Some(python)
    } else {
        missing("PyYAML for python3", PYYAML_INSTALL)
    }
}

fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
    let mut input = child.stdin.take().expect("piped stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("wait for the tool")
}

fn assert_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Metrics with every labelled series touched, as a busy proxy would export them.
fn busy_metrics() -> Metrics {
    let metrics = Metrics::new();
    metrics.connection_opened();
    ConnectionErrorReason::ALL
        .iter()
        .for_each(|&r| metrics.connection_error(r));
    for role in ["app", "support", "dba"] {
        let role = metrics.role(role);
        for &kind in StatementKind::ALL {
            for &outcome in StatementOutcome::ALL {
                metrics.statement(kind, &role, outcome, Duration::from_micros(120));
            }
        }
    }
    CryptoOp::ALL
        .iter()
        .for_each(|&op| metrics.crypto_operations(op, 3));
    ProtectedValueAction::ALL
        .iter()
        .for_each(|&a| metrics.protected_values(a, 2));
    RefusalReason::ALL.iter().for_each(|&r| metrics.refusal(r));
    AlertKind::ALL.iter().for_each(|&k| metrics.alert(k));
    ReloadResult::ALL
        .iter()
        .for_each(|&r| metrics.rules_reload(r));
    Direction::ALL.iter().for_each(|&d| metrics.bytes(d, 4096));
    metrics.upstream_error();
    metrics.audit_event();
    metrics.audit_dropped();
    metrics
}

/// Metric family names in Prometheus text (`# TYPE name type` lines), with their types.
fn exported_families(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
        .collect()
}

/// Every `pgshroud_[a-z_]+` token in `text`.
fn referenced_metrics(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("pgshroud_") {
        let candidate = &rest[start..];
        let len = candidate
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(candidate.len());
        let preceded_by_name_char = rest[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !preceded_by_name_char {
            names.insert(candidate[..len].to_owned());
        }
        rest = &candidate[len..];
    }
    names
}

/// Maps a sample name to its family: `x_bucket`, `x_sum`, `x_count` of histogram `x` become `x`.
fn family_of(name: &str, histograms: &BTreeSet<String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if histograms.contains(base) {
                return base.to_owned();
            }
        }
    }
    name.to_owned()
}

#[test]
fn promtool_accepts_the_metrics_text() {
    let Some(promtool) = tool("promtool", PROMTOOL_INSTALL) else {
        return;
    };
    let text = busy_metrics().encode();
    let output = run(&promtool, &["check", "metrics"], Some(&text));
    assert_success("promtool check metrics", &output);
    let complaints = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(complaints.trim().is_empty(), "promtool lint: {complaints}");
}

#[test]
fn promtool_accepts_the_alert_rules() {
    let Some(promtool) = tool("promtool", PROMTOOL_INSTALL) else {
        return;
    };
    let output = run(
        &promtool,
        &["check", "rules", "docker/prometheus/alerts.yml"],
        None,
    );
    assert_success("promtool check rules", &output);
}

#[test]
fn alert_rules_behave_as_their_unit_tests_say() {
    let Some(promtool) = tool("promtool", PROMTOOL_INSTALL) else {
        return;
    };
    let output = run(
        &promtool,
        &["test", "rules", "docker/prometheus/alerts_test.yml"],
        None,
    );
    assert_success("promtool test rules", &output);
}

#[test]
fn promtool_accepts_the_prometheus_config() {
    let Some(promtool) = tool("promtool", PROMTOOL_INSTALL) else {
        return;
    };
    let output = run(
        &promtool,
        &["check", "config", "docker/prometheus/prometheus.yml"],
        None,
    );
    assert_success("promtool check config", &output);
}

#[test]
fn dashboard_and_alerts_query_only_exported_metrics() {
    let families = exported_families(&busy_metrics().encode());
    let exported: BTreeSet<String> = families.iter().map(|(name, _)| name.clone()).collect();
    let histograms: BTreeSet<String> = families
        .iter()
        .filter(|(_, kind)| kind == "histogram")
        .map(|(name, _)| name.clone())
        .collect();
    for file in [
        "grafana/dashboards/pgshroud.json",
        "prometheus/alerts.yml",
        "prometheus/alerts_test.yml",
    ] {
        let used: BTreeSet<String> = referenced_metrics(&read(&docker(file)))
            .iter()
            .map(|name| family_of(name, &histograms))
            .collect();
        assert!(!used.is_empty(), "{file} queries no pgshroud metric");
        let unknown: Vec<&String> = used.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics pgshroud does not export: {unknown:?}"
        );
    }
}

#[test]
fn dashboard_shows_every_exported_metric() {
    let families = exported_families(&busy_metrics().encode());
    let histograms: BTreeSet<String> = families
        .iter()
        .filter(|(_, kind)| kind == "histogram")
        .map(|(name, _)| name.clone())
        .collect();
    let shown: BTreeSet<String> =
        referenced_metrics(&read(&docker("grafana/dashboards/pgshroud.json")))
            .iter()
            .map(|name| family_of(name, &histograms))
            .collect();
    let missing: Vec<&String> = families
        .iter()
        .map(|(name, _)| name)
        .filter(|name| !shown.contains(*name))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard shows no panel for {missing:?}"
    );
}

/// Checks the dashboard's structure and writes its queries (Grafana variables replaced) as
/// recording rules, so promtool can check their PromQL.
const DASHBOARD_CHECK: &str = r##"
import json, sys
dashboard = json.load(open(sys.argv[1]))
problems, exprs, ids = [], [], set()
def walk(panels):
    for panel in panels:
        if panel["id"] in ids:
            problems.append("duplicate panel id %s" % panel["id"])
        ids.add(panel["id"])
        if panel["type"] == "row":
            walk(panel.get("panels", []))
            continue
        title = panel.get("title", "?")
        if panel.get("datasource", {}).get("uid") != "${datasource}":
            problems.append("panel %r does not use the ${datasource} variable" % title)
        if "gridPos" not in panel:
            problems.append("panel %r has no gridPos" % title)
        targets = panel.get("targets", [])
        if not targets:
            problems.append("panel %r has no queries" % title)
        for target in targets:
            if not target.get("expr"):
                problems.append("panel %r has a query without expr" % title)
            exprs.append(target.get("expr", ""))
walk(dashboard["panels"])
if dashboard.get("uid") != "pgshroud":
    problems.append("dashboard uid is not pgshroud")
if problems:
    print("\n".join(problems))
    sys.exit(1)
with open(sys.argv[2], "w") as out:
    out.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, expr in enumerate(exprs):
        expr = expr.replace("$__rate_interval", "5m").replace("$instance", ".*")
        out.write("      - record: dashboard:query_%d\n        expr: %s\n" % (i, json.dumps(expr)))
"##;

#[test]
fn dashboard_is_well_formed_and_its_queries_are_valid_promql() {
    let (Some(python), Some(promtool)) = (
        tool("python3", "apt-get install -y python3"),
        tool("promtool", PROMTOOL_INSTALL),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("dashboard_queries.yml");
    let dashboard = docker("grafana/dashboards/pgshroud.json");
    let output = run(
        &python,
        &[
            "-c",
            DASHBOARD_CHECK,
            dashboard.to_str().expect("utf-8 path"),
            rules.to_str().expect("utf-8 path"),
        ],
        None,
    );
    assert_success("dashboard structure check", &output);
    let output = run(
        &promtool,
        &["check", "rules", rules.to_str().expect("utf-8 path")],
        None,
    );
    assert_success("promtool check rules (dashboard queries)", &output);
}

fn kubernetes_manifests() -> Vec<PathBuf> {
    let dir = docker("kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .filter(|path| path.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    let Some(validate) = tool("kubernetes-validate", KUBERNETES_VALIDATE_INSTALL) else {
        return;
    };
    let files = kubernetes_manifests();
    assert!(files.len() >= 5, "manifests missing: {files:?}");
    let mut args = vec!["--strict".to_owned(), "--quiet".to_owned()];
    args.extend(files.iter().map(|f| f.to_string_lossy().into_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run(&validate, &args, None);
    assert_success("kubernetes-validate --strict", &output);
    let report = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    // Only the Prometheus Operator's CRD has no bundled schema; kubernetes_manifests_agree checks it.
    for line in report.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            line.starts_with("WARN") && line.contains("kind ServiceMonitor"),
            "unexpected kubernetes-validate output: {line}"
        );
    }
}

/// Cross-references between the Kubernetes manifests that no schema checks; writes the
/// ConfigMap's pgshroud.toml to argv[2] for the Rust side to parse.
const KUBERNETES_CHECK: &str = r##"
import os, re, sys, yaml
root, toml_out = sys.argv[1], sys.argv[2]
kdir = os.path.join(root, "docker", "kubernetes")
problems = []
def check(ok, message):
    if not ok:
        problems.append(message)
docs = {}
for name in sorted(os.listdir(kdir)):
    if name.endswith(".yaml"):
        for doc in yaml.safe_load_all(open(os.path.join(kdir, name))):
            if doc:
                docs.setdefault(doc["kind"], []).append((name, doc))
def one(kind):
    found = docs.get(kind, [])
    check(len(found) == 1, "expected one %s, found %d" % (kind, len(found)))
    return found[0][1] if found else {}
kustomization, deployment, service = one("Kustomization"), one("Deployment"), one("Service")
monitor, configmap, secret = one("ServiceMonitor"), one("ConfigMap"), one("Secret")
listed = set(kustomization.get("resources", []))
files = {n for n in os.listdir(kdir) if n.endswith(".yaml") and n != "kustomization.yaml"}
check(listed == files, "kustomization resources %s != manifest files %s" % (sorted(listed), sorted(files)))

pod = deployment["spec"]["template"]
pod_labels = pod["metadata"]["labels"]
def subset(a, b):
    return all(b.get(k) == v for k, v in a.items())
check(subset(deployment["spec"]["selector"]["matchLabels"], pod_labels), "Deployment selector does not match its pods")
check(subset(service["spec"]["selector"], pod_labels), "Service selector does not match the pods")
spec = pod["spec"]
containers = spec.get("initContainers", []) + spec.get("containers", [])
proxy = [c for c in containers if c["name"] == "pgshroud"]
check(len(proxy) == 1, "no pgshroud container")
proxy = proxy[0] if proxy else {}
ports = {p["name"]: p["containerPort"] for p in proxy.get("ports", [])}
check(ports.get("admin") == 9930 and ports.get("postgres") == 6432, "pgshroud ports: %s" % ports)
for probe, path in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")]:
    get = proxy.get(probe, {}).get("httpGet", {})
    check(get.get("path") == path and get.get("port") == "admin", "%s should GET %s on port admin" % (probe, path))
resources = proxy.get("resources", {})
check({"cpu", "memory"} <= set(resources.get("requests", {})) and {"cpu", "memory"} <= set(resources.get("limits", {})), "pgshroud needs cpu and memory requests and limits")
security = proxy.get("securityContext", {})
check(security.get("readOnlyRootFilesystem") is True, "pgshroud root filesystem must be read-only")
check(security.get("allowPrivilegeEscalation") is False, "pgshroud must not escalate privileges")
check(security.get("runAsNonRoot") is True or spec.get("securityContext", {}).get("runAsNonRoot") is True, "pgshroud must run as non-root")
dockerfile = open(os.path.join(root, "docker", "Dockerfile")).read()
uid = re.search(r"^USER (\d+)", dockerfile, re.M)
check(uid is not None and spec.get("securityContext", {}).get("runAsUser") == int(uid.group(1)), "runAsUser must be the image's USER uid")

env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef", {}) for e in proxy.get("env", [])}
for var in ["PGSHROUD_MASTER_KEY", "PGSHROUD_AUDIT_KEY"]:
    ref = env.get(var, {})
    check(ref.get("name") == secret["metadata"]["name"] and ref.get("key") in secret.get("stringData", secret.get("data", {})), "%s must come from a key of Secret %s" % (var, secret["metadata"]["name"]))
mounts = {m["name"]: m["mountPath"] for m in proxy.get("volumeMounts", [])}
volumes = {v["name"]: v for v in spec.get("volumes", [])}
config_volumes = [n for n, v in volumes.items() if v.get("configMap", {}).get("name") == configmap["metadata"]["name"]]
check(len(config_volumes) == 1 and mounts.get(config_volumes[0]) == "/etc/pgshroud", "ConfigMap must be mounted at /etc/pgshroud")
check({"pgshroud.toml", "rules.toml"} <= set(configmap.get("data", {})), "ConfigMap needs pgshroud.toml and rules.toml")

service_ports = {p["name"]: p for p in service["spec"]["ports"]}
check(service_ports.get("admin", {}).get("targetPort") in ("admin", 9930), "Service must expose the admin port")
check(subset(monitor["spec"]["selector"]["matchLabels"], service["metadata"].get("labels", {})), "ServiceMonitor selector does not match the Service")
for endpoint in monitor["spec"]["endpoints"]:
    check(endpoint.get("port") in service_ports, "ServiceMonitor port %r is not a Service port" % endpoint.get("port"))
    check(endpoint.get("path", "/metrics") == "/metrics", "ServiceMonitor must scrape /metrics")
job_label = monitor["spec"].get("jobLabel")
check(service["metadata"].get("labels", {}).get(job_label) == "pgshroud", "series must get job=\"pgshroud\" (alerts.yml selects on it)")
check(monitor["apiVersion"] == "monitoring.coreos.com/v1", "ServiceMonitor apiVersion")

config_text = configmap.get("data", {}).get("pgshroud.toml", "")
check(re.search(r'^admin_listen = "0\.0\.0\.0:9930"', config_text, re.M) is not None, "admin_listen must be 0.0.0.0:9930 for probes")
check(re.search(r'^listen = "127\.0\.0\.1:6432"', config_text, re.M) is not None, "a sidecar listens on 127.0.0.1:6432")
open(toml_out, "w").write(config_text)
if problems:
    print("\n".join(problems))
    sys.exit(1)
"##;

#[test]
fn kubernetes_manifests_agree_with_each_other() {
    let Some(python) = python_with_yaml() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("pgshroud.toml");
    let output = run(
        &python,
        &[
            "-c",
            KUBERNETES_CHECK,
            repo_root().to_str().expect("utf-8 path"),
            config.to_str().expect("utf-8 path"),
        ],
        None,
    );
    assert_success("kubernetes cross-reference check", &output);
    assert_resolves_as_settings(&config);
}

/// Parses a config file with pgshroud's own loader and validates it; the rules path points into
/// the container, so the repository's copy stands in for it.
fn assert_resolves_as_settings(config: &Path) {
    let mut layer = ConfigLayer::from_file(config)
        .unwrap_or_else(|e| panic!("{} does not parse: {e}", config.display()));
    assert_eq!(
        layer.rules.as_deref(),
        Some(Path::new("/etc/pgshroud/rules.toml"))
    );
    layer.rules = Some(docker("config/rules.toml"));
    if let Err(e) = Settings::resolve(layer) {
        panic!("{}: {e}", config.display());
    }
}

#[test]
fn compose_config_file_is_valid_pgshroud_config() {
    assert_resolves_as_settings(&docker("config/pgshroud.toml"));
}

/// The compose file's references: mounted files, the build, variables, and the addresses the
/// other files use to reach its services.
const COMPOSE_CHECK: &str = r##"
import os, re, sys, yaml
from urllib.parse import urlparse
ddir = os.path.realpath(os.path.join(sys.argv[1], "docker"))
compose = yaml.safe_load(open(os.path.join(ddir, "docker-compose.yml")))
services = compose["services"]
problems = []
def check(ok, message):
    if not ok:
        problems.append(message)
check({"db", "pgshroud", "prometheus", "grafana"} <= set(services), "services: %s" % sorted(services))
for name, service in services.items():
    for volume in service.get("volumes", []):
        source = volume.split(":")[0]
        if source.startswith("."):
            check(os.path.exists(os.path.join(ddir, source)), "%s mounts missing %s" % (name, source))
build = services["pgshroud"]["build"]
context = os.path.normpath(os.path.join(ddir, build["context"]))
check(os.path.isfile(os.path.join(context, build["dockerfile"])), "pgshroud build: no Dockerfile")
check(os.path.isfile(os.path.join(context, "Cargo.toml")), "pgshroud build context must be the workspace root")
text = open(os.path.join(ddir, "docker-compose.yml")).read()
example = {line.split("=")[0] for line in open(os.path.join(ddir, ".env.example")) if "=" in line and not line.startswith("#")}
used = set(re.findall(r"\$\{([A-Z_]+)", text))
check(used <= example, "variables missing from .env.example: %s" % sorted(used - example))
env = services["pgshroud"].get("environment", {})
check({"PGSHROUD_MASTER_KEY", "PGSHROUD_AUDIT_KEY"} <= set(env), "pgshroud needs both keys in its environment")
check(any(v.startswith("./config:/etc/pgshroud") for v in services["pgshroud"]["volumes"]), "config must be mounted at /etc/pgshroud")
config = open(os.path.join(ddir, "config", "pgshroud.toml")).read()
upstream = urlparse(re.search(r'^upstream = "([^"]+)"', config, re.M).group(1))
check(upstream.hostname in services, "upstream host %r is not a compose service" % upstream.hostname)
admin_port = re.search(r'^admin_listen = "[^"]*:(\d+)"', config, re.M).group(1)
prometheus = yaml.safe_load(open(os.path.join(ddir, "prometheus", "prometheus.yml")))
targets = [t for job in prometheus["scrape_configs"] if job["job_name"] == "pgshroud" for sc in job["static_configs"] for t in sc["targets"]]
check(targets == ["pgshroud:" + admin_port], "Prometheus must scrape pgshroud:%s, not %s" % (admin_port, targets))
datasources = yaml.safe_load(open(os.path.join(ddir, "grafana", "provisioning", "datasources", "prometheus.yml")))
url = urlparse(datasources["datasources"][0]["url"])
check(url.hostname in services, "Grafana data source host %r is not a compose service" % url.hostname)
providers = yaml.safe_load(open(os.path.join(ddir, "grafana", "provisioning", "dashboards", "pgshroud.yml")))
path = providers["providers"][0]["options"]["path"]
check(any(v.startswith("./grafana/dashboards:" + path) for v in services["grafana"]["volumes"]), "dashboards are not mounted at the provider's path %s" % path)
if problems:
    print("\n".join(problems))
    sys.exit(1)
"##;

#[test]
fn compose_file_references_what_exists() {
    let Some(python) = python_with_yaml() else {
        return;
    };
    let output = run(
        &python,
        &[
            "-c",
            COMPOSE_CHECK,
            repo_root().to_str().expect("utf-8 path"),
        ],
        None,
    );
    assert_success("compose cross-reference check", &output);
}

#[test]
fn dockerfile_builds_pgshroud_and_runs_it_unprivileged() {
    let dockerfile = read(&docker("Dockerfile"));
    for expected in [
        "FROM rust:1-bookworm AS builder",
        "cargo build --release --locked -p pgshroud",
        "FROM debian:bookworm-slim",
        "ca-certificates",
        "USER 10001:10001",
        "EXPOSE 6432 9930",
        r#"ENTRYPOINT ["pgshroud", "serve", "--config", "/etc/pgshroud/pgshroud.toml"]"#,
    ] {
        assert!(
            dockerfile.contains(expected),
            "Dockerfile lacks `{expected}`"
        );
    }
}

#[test]
fn metric_name_scan_finds_names_and_ignores_prefixes_of_other_words() {
    let found = referenced_metrics(
        r#"rate(pgshroud_bytes_total{x="pgshroud"}[5m]) my_pgshroud_x "pgshroud-security""#,
    );
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["pgshroud_bytes_total"]
    );
}

struct AlwaysReady;

impl Readiness for AlwaysReady {
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async { Ok(()) })
    }
}

/// A process started by the test, killed when the test ends however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
}

/// `GET path` against Prometheus' HTTP API; the body, or `None` while it is not answering.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_admin_endpoint_and_loads_the_alerts() {
    let Some(prometheus) = tool("prometheus", PROMTOOL_INSTALL) else {
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind admin");
    let admin_port = listener.local_addr().expect("admin addr").port();
    let metrics = Arc::new(Metrics::new());
    metrics.role("app");
    tokio::spawn(admin::serve(
        listener,
        metrics,
        Arc::new(AlwaysReady),
        std::future::pending(),
    ));

    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("prometheus.yml");
    let alerts = docker("prometheus/alerts.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [{alerts:?}]\n\
             scrape_configs:\n  - job_name: pgshroud\n    \
             static_configs: [{{targets: [\"127.0.0.1:{admin_port}\"]}}]\n"
        ),
    )
    .expect("write prometheus.yml");
    let web_port = free_port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
    let _prometheus = KillOnDrop(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{web_port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
    );

    // Target discovery takes a few seconds; the deadline only bounds a broken run.
    let deadline = Instant::now() + Duration::from_secs(90);
    let query = "/api/v1/query?query=pgshroud_build_info";
    let scraped = loop {
        let targets = http_get(web_port, "/api/v1/targets").unwrap_or_default();
        let build_info = http_get(web_port, query).unwrap_or_default();
        if targets.contains(r#""health":"up""#) && build_info.contains(r#""version""#) {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let log = std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    assert!(
        scraped,
        "Prometheus never scraped pgshroud; targets: {}\nlog:\n{log}",
        http_get(web_port, "/api/v1/targets").unwrap_or_default()
    );
    let rules = http_get(web_port, "/api/v1/rules").unwrap_or_default();
    for alert in [
        "PgshroudDown",
        "PgshroudBulkRead",
        "PgshroudAuditEventsDropped",
    ] {
        assert!(rules.contains(alert), "{alert} not loaded: {rules}");
    }
    let metadata =
        http_get(web_port, "/api/v1/metadata?metric=pgshroud_bytes_total").unwrap_or_default();
    assert!(
        metadata.contains(r#""type":"counter""#),
        "pgshroud_bytes_total not typed as a counter: {metadata}"
    );
}

/// Writes the replicas ConfigMap's files to argv[2] and checks the references between the
/// replicas manifests that no schema checks.
const REPLICAS_CHECK: &str = r##"
import os, sys, yaml
kdir, out = sys.argv[1], sys.argv[2]
docs = {}
for name in sorted(os.listdir(kdir)):
    if name.endswith(".yaml"):
        for doc in yaml.safe_load_all(open(os.path.join(kdir, name))):
            docs[doc["kind"]] = doc
problems = []
listed = set(docs["Kustomization"]["resources"])
files = {n for n in os.listdir(kdir) if n.endswith(".yaml") and n != "kustomization.yaml"}
if listed != files:
    problems.append("kustomization resources %s != files %s" % (sorted(listed), sorted(files)))
deployment, service, secret, configmap = docs["Deployment"], docs["Service"], docs["Secret"], docs["ConfigMap"]
pod = deployment["spec"]["template"]
if not all(pod["metadata"]["labels"].get(k) == v for k, v in service["spec"]["selector"].items()):
    problems.append("Service selector does not match the pods")
if deployment["spec"]["replicas"] < 2:
    problems.append("a shared tier runs more than one replica")
container = pod["spec"]["containers"][0]
mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
cancel = volumes["cancel-key"]["secret"]
if cancel["secretName"] != secret["metadata"]["name"] or cancel["items"][0]["key"] not in secret["stringData"]:
    problems.append("the cancel key must come from the Secret")
config = configmap["data"]["pgshroud.toml"]
path = os.path.join(mounts["cancel-key"], cancel["items"][0]["path"])
if 'cancel_key_file = "%s"' % path not in config:
    problems.append("cancel_key_file must name the mounted key %s" % path)
for name, text in configmap["data"].items():
    open(os.path.join(out, name), "w").write(text)
if problems:
    print("\n".join(problems))
    sys.exit(1)
"##;

#[test]
fn replicas_manifests_validate_agree_and_configure_a_shared_cancel_key() {
    let dir = docker("kubernetes/replicas");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("docker/kubernetes/replicas")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "{files:?}");
    if let Some(validate) = tool("kubernetes-validate", KUBERNETES_VALIDATE_INSTALL) {
        let mut args = vec!["--strict", "--quiet"];
        args.extend(files.iter().map(String::as_str));
        assert_success(
            "kubernetes-validate --strict (replicas)",
            &run(&validate, &args, None),
        );
    }
    let Some(python) = python_with_yaml() else {
        return;
    };
    let out = tempfile::tempdir().expect("temp dir");
    let output = run(
        &python,
        &[
            "-c",
            REPLICAS_CHECK,
            dir.to_str().expect("utf-8 path"),
            out.path().to_str().expect("utf-8 path"),
        ],
        None,
    );
    assert_success("replicas cross-reference check", &output);
    let mut layer =
        ConfigLayer::from_file(&out.path().join("pgshroud.toml")).expect("config parses");
    assert_eq!(
        layer.cancel_key_file.as_deref(),
        Some(Path::new("/run/pgshroud/cancel-key"))
    );
    layer.rules = Some(out.path().join("rules.toml"));
    let settings = Settings::resolve(layer).unwrap_or_else(|e| panic!("replicas config: {e}"));
    // The rules file loads as pgshroud reads it (with a key standing in for the Secret's).
    let key = out.path().join("master.key");
    std::fs::write(&key, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
    let mut settings = settings;
    settings.master_key_file = Some(key);
    pgshroud::protect::load(&settings, &pgshroud::crypto::kms::NoKmsObserver)
        .expect("the replicas' rules load");
}
