//! The Helm chart `charts/shoal`: `helm lint`, `helm template` output
//! validated offline with `kubernetes-validate --strict` (the Prometheus
//! Operator kinds checked by structure) for the default values and the
//! value sets under `charts/shoal/ci/`, what the values change in the
//! rendered objects, and the one source of truth with `deploy/kubernetes`:
//! rendered with `ci/kustomize-values.yaml`, the chart yields the very
//! objects those manifests hold (kustomize's own label added), object by
//! object; and with `ci/harbor-values.yaml`, scheduler args the real
//! binary starts with, serving Harbor's preheat API over HTTPS behind its
//! Secrets.
//! helm comes from PyPI (scripts/test installs it); a missing helm fails
//! these tests.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use shoal_e2e::k8s::{args, container};
use shoal_testkit::{ChildGuard, free_port, require_tool, shoal_bin, wait_http_status};

/// The same Kubernetes version tests/deploy.rs validates against.
const KUBERNETES_VERSION: &str = "1.34.0";
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The release namespace every render uses.
const NAMESPACE: &str = "shoal";

/// Kinds kubernetes-validate has no schema for.
const CUSTOM_KINDS: &[&str] = &["PodMonitor", "ServiceMonitor", "PrometheusRule"];

/// Labels Helm's convention adds and kustomize's manifests do not carry.
const HELM_ONLY_LABELS: &[&str] =
    &["helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

fn chart() -> PathBuf {
    repo().join("charts/shoal")
}

fn tool(name: &str) -> PathBuf {
    require_tool(name).unwrap_or_else(|e| {
        panic!("{e}\n{name} is required by this test (never skipped): run scripts/test, which installs it")
    })
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// YAML documents (text) as JSON values, parsed by PyYAML (which
/// kubernetes-validate depends on).
fn yaml_docs(text: &str) -> Vec<Value> {
    const SCRIPT: &str = "import json, sys, yaml\n\
        docs = [d for d in yaml.safe_load_all(sys.stdin) if d is not None]\n\
        print(json.dumps(docs))\n";
    let mut child = Command::new(tool("python3"))
        .arg("-c")
        .arg(SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "parsing YAML failed: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    match serde_json::from_slice(&out.stdout) {
        Ok(Value::Array(docs)) => docs,
        other => panic!("unexpected parse result {other:?}"),
    }
}

/// `helm template` of the chart in namespace `shoal` with these value
/// files (under charts/shoal/ci/) and `--set`s: Ok(text) or Err(stderr).
fn render(values: &[&str], sets: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(tool("helm"));
    cmd.args(["template", "shoal"]).arg(chart()).args(["--namespace", NAMESPACE]);
    for v in values {
        cmd.arg("--values").arg(chart().join("ci").join(v));
    }
    for s in sets {
        cmd.args(["--set", s]);
    }
    let (ok, stdout, stderr) = run(&mut cmd);
    if ok { Ok(stdout) } else { Err(stderr) }
}

fn objects(values: &[&str], sets: &[&str]) -> Vec<Value> {
    let text = render(values, sets).unwrap_or_else(|e| panic!("helm template {values:?} {sets:?} failed:\n{e}"));
    yaml_docs(&text)
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} named {name} in the rendered chart"))
}

fn has(objects: &[Value], kind: &str) -> bool {
    objects.iter().any(|o| o["kind"] == kind)
}

fn pod_spec(o: &Value) -> &Value {
    match o["kind"].as_str() {
        Some("CronJob") => &o["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => &o["spec"]["template"]["spec"],
    }
}

fn daemon_config(objects: &[Value]) -> String {
    find(objects, "ConfigMap", "shoal-config")["data"]["config.toml"].as_str().expect("config.toml").to_string()
}

#[test]
fn helm_lint_passes_for_every_value_set() {
    let helm = tool("helm");
    let (ok, out, err) = run(Command::new(&helm).args(["lint", "--strict"]).arg(chart()));
    assert!(ok, "helm lint --strict charts/shoal failed:\n{out}{err}");
    for v in ["kustomize-values.yaml", "no-scheduler-values.yaml", "ha-values.yaml", "harbor-values.yaml"] {
        let (ok, out, err) = run(Command::new(&helm)
            .args(["lint", "--strict"])
            .arg(chart())
            .arg("--values")
            .arg(chart().join("ci").join(v)));
        assert!(ok, "helm lint --strict with {v} failed:\n{out}{err}");
    }
}

#[test]
fn rendered_objects_validate_strictly() {
    let kv = tool("kubernetes-validate");
    let sets: [&[&str]; 5] =
        [&[], &["no-scheduler-values.yaml"], &["ha-values.yaml"], &["kustomize-values.yaml"], &["harbor-values.yaml"]];
    for values in sets {
        let text = render(values, &[]).unwrap_or_else(|e| panic!("helm template {values:?}: {e}"));
        let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        std::fs::write(file.path(), &text).unwrap();
        let (ok, out, err) =
            run(Command::new(&kv).args(["--strict", "--kubernetes-version", KUBERNETES_VERSION]).arg(file.path()));
        let report = format!("{out}{err}");
        assert!(ok && !report.contains("ERROR"), "kubernetes-validate --strict rejected {values:?}:\n{report}");
        let short = KUBERNETES_VERSION.rsplit_once('.').unwrap().0;
        let objects = yaml_docs(&text);
        let mut core = 0;
        for o in &objects {
            let kind = o["kind"].as_str().unwrap();
            assert_eq!(o["metadata"]["namespace"], NAMESPACE, "{kind} must live in the release namespace");
            if CUSTOM_KINDS.contains(&kind) {
                continue;
            }
            let name = o["metadata"]["name"].as_str().unwrap();
            let line = format!("passed for resource {}/{name} against version {short}", kind.to_lowercase());
            assert!(report.contains(&line), "{kind}/{name} of {values:?} was not strictly validated:\n{report}");
            core += 1;
        }
        assert!(core >= 4, "{values:?}: only {core} core objects");
        for line in report.lines().filter(|l| l.starts_with("WARN")) {
            assert!(
                CUSTOM_KINDS
                    .iter()
                    .any(|k| line.contains(&format!("kind {k} with api version monitoring.coreos.com/v1"))),
                "unexpected warning for {values:?}: {line}"
            );
        }
        check_monitoring_structure(&objects);
    }
}

/// The Prometheus Operator objects select what exists and set the job
/// labels the alerts and dashboard use.
fn check_monitoring_structure(objects: &[Value]) {
    if let Some(pm) = objects.iter().find(|o| o["kind"] == "PodMonitor") {
        let ds = find(objects, "DaemonSet", "shoal-daemon");
        assert_eq!(pm["spec"]["selector"]["matchLabels"], ds["spec"]["template"]["metadata"]["labels"]);
        let ep = &pm["spec"]["podMetricsEndpoints"][0];
        assert_eq!(ep["port"], "metrics");
        assert_eq!(ep["relabelings"][0]["replacement"], "shoal-daemon");
    }
    if let Some(sm) = objects.iter().find(|o| o["kind"] == "ServiceMonitor") {
        let svc = find(objects, "Service", "shoal-scheduler");
        for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
            assert_eq!(&svc["metadata"]["labels"][k], v, "the ServiceMonitor selects {k}={v}");
        }
        assert_eq!(sm["spec"]["endpoints"][0]["relabelings"][0]["replacement"], "shoal-scheduler");
    }
    if let Some(rule) = objects.iter().find(|o| o["kind"] == "PrometheusRule") {
        let alerts: Vec<&str> = rule["spec"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap())
            .map(|r| {
                assert!(r["expr"].as_str().is_some_and(|e| !e.is_empty()), "{r:#}");
                // Prometheus' own templates reach the rule as written.
                let summary = r["annotations"]["summary"].as_str().unwrap();
                assert!(summary.contains("{{ $") || !summary.contains('{'), "{summary}");
                r["alert"].as_str().unwrap()
            })
            .collect();
        assert!(alerts.contains(&"ShoalDaemonDown"), "{alerts:?}");
    }
}

#[test]
fn chart_and_manifests_name_the_image_the_script_builds() {
    let meta = yaml_docs(&std::fs::read_to_string(chart().join("Chart.yaml")).unwrap()).remove(0);
    assert_eq!(meta["version"], VERSION, "Chart.yaml version follows crates/shoal");
    assert_eq!(meta["appVersion"], VERSION, "Chart.yaml appVersion is the shoal version (the default image tag)");
    // scripts/build-image makes shoal:<version>; every container of the
    // default render and of deploy/kubernetes runs exactly that.
    let image = format!("shoal:{VERSION}");
    let rendered = objects(&["kustomize-values.yaml"], &[]);
    let mut containers = 0;
    for o in
        rendered.iter().filter(|o| ["DaemonSet", "Deployment", "Job", "CronJob"].contains(&o["kind"].as_str().unwrap()))
    {
        let pod = pod_spec(o);
        for c in pod["containers"].as_array().into_iter().chain(pod["initContainers"].as_array()).flatten() {
            assert_eq!(c["image"], image.as_str(), "{} in {}", c["name"], o["metadata"]["name"]);
            containers += 1;
        }
    }
    assert_eq!(containers, 6, "daemon (3), scheduler, prewarm Job and CronJob");
    let k = yaml_docs(&std::fs::read_to_string(repo().join("deploy/kubernetes/kustomization.yaml")).unwrap()).remove(0);
    let images = k["images"].as_array().expect("kustomization images");
    assert_eq!(images[0]["name"], "shoal", "kustomize rewrites the image the manifests name");
    assert_eq!(images[0]["newTag"], VERSION);
}

/// Removes Helm's own labels from every `labels` map in `v`.
fn strip_helm_labels(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(labels)) = m.get_mut("labels") {
                for l in HELM_ONLY_LABELS {
                    labels.remove(*l);
                }
            }
            m.values_mut().for_each(strip_helm_labels);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_helm_labels),
        _ => {}
    }
}

/// JSON pointers where `a` and `b` differ.
fn differences(a: &Value, b: &Value, path: String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                differences(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    format!("{path}/{k}"),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differences(p, q, format!("{path}/{i}"), out);
            }
        }
        _ if a != b => out.push(format!("{path}: manifests {a} vs chart {b}")),
        _ => {}
    }
}

/// The objects `kubectl apply -k deploy/kubernetes` applies, less the
/// Secrets its generators make from pki/ and the Namespace, keyed by kind
/// and name, with kustomize's `labels` added to each object's metadata
/// (`includeSelectors: false`: nowhere else).
fn kustomize_objects() -> BTreeMap<(String, String), Value> {
    let dir = repo().join("deploy/kubernetes");
    let k = yaml_docs(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap()).remove(0);
    assert_eq!(k["labels"][0]["includeSelectors"], false);
    let extra = k["labels"][0]["pairs"].as_object().expect("kustomization labels").clone();
    let mut out = BTreeMap::new();
    for f in k["resources"].as_array().unwrap() {
        let text = std::fs::read_to_string(dir.join(f.as_str().unwrap())).unwrap();
        for mut o in yaml_docs(&text) {
            // The chart installs into a namespace the operator made
            // (docs/install.md): it renders no Namespace.
            if o["kind"] == "Namespace" {
                continue;
            }
            let labels = o["metadata"].as_object_mut().unwrap().entry("labels").or_insert(serde_json::json!({}));
            labels.as_object_mut().unwrap().extend(extra.clone());
            let key = (o["kind"].as_str().unwrap().to_string(), o["metadata"]["name"].as_str().unwrap().to_string());
            out.insert(key, o);
        }
    }
    out
}

#[test]
fn kustomize_manifests_equal_the_chart_object_by_object() {
    let manifests = kustomize_objects();
    let mut chart = BTreeMap::new();
    for mut o in objects(&["kustomize-values.yaml"], &[]) {
        strip_helm_labels(&mut o);
        let kind = o["kind"].as_str().unwrap().to_string();
        let mut name = o["metadata"]["name"].as_str().unwrap().to_string();
        // Two documented differences: the chart's prewarm Job is named
        // after the release revision (a new one per upgrade), and its
        // daemon pods carry a checksum of the config (they restart when
        // it changes; kustomize users restart them by hand).
        if kind == "Job" {
            assert_eq!(name, "shoal-prewarm-1");
            name = "shoal-prewarm-example".into();
            o["metadata"]["name"] = name.clone().into();
        }
        if kind == "DaemonSet" {
            let annotations = o["spec"]["template"]["metadata"].as_object_mut().unwrap().remove("annotations");
            let checksum = annotations.as_ref().and_then(|a| a["checksum/config"].as_str()).unwrap_or_default();
            assert_eq!(checksum.len(), 64, "the daemon pods carry checksum/config: {annotations:?}");
        }
        chart.insert((kind, name), o);
    }
    let left: BTreeSet<_> = manifests.keys().collect();
    let right: BTreeSet<_> = chart.keys().collect();
    assert_eq!(left, right, "deploy/kubernetes and the chart hold different objects");
    let mut diffs = Vec::new();
    for (key, m) in &manifests {
        differences(m, &chart[key], format!("{}/{}", key.0, key.1), &mut diffs);
    }
    assert!(
        diffs.is_empty(),
        "deploy/kubernetes and charts/shoal (ci/kustomize-values.yaml) differ; change both:\n{}",
        diffs.join("\n")
    );
}

#[test]
fn default_values_run_the_scheduler_and_keep_pods_non_root_except_the_daemon() {
    let objects = objects(&[], &[]);
    let deploy = find(&objects, "Deployment", "shoal-scheduler");
    assert_eq!(deploy["spec"]["replicas"], 2);
    let config = daemon_config(&objects);
    assert!(config.contains("schedulers = [\"shoal-scheduler.shoal.svc.cluster.local:65004\"]"), "{config}");
    assert!(config.contains("[swarm.discovery]"), "{config}");
    // Off by default: they need the Prometheus Operator's CRDs and chosen images.
    for kind in ["PodMonitor", "ServiceMonitor", "PrometheusRule", "Job", "CronJob", "Secret", "Namespace"] {
        assert!(!has(&objects, kind), "the default values render a {kind}");
    }
    // The image runs as 65532; the daemon needs root for its hostPath
    // directories and says so, the scheduler stays non-root.
    let ds = find(&objects, "DaemonSet", "shoal-daemon");
    assert_eq!(pod_spec(ds)["securityContext"]["runAsUser"], 0);
    let sched = pod_spec(deploy);
    assert_eq!(sched["securityContext"]["runAsNonRoot"], true);
    assert_eq!(sched["securityContext"]["runAsUser"], 65532);
    let with_prewarm = self::objects(&[], &["prewarm.cronJob.enabled=true"]);
    let cron = pod_spec(find(&with_prewarm, "CronJob", "shoal-prewarm"));
    assert_eq!(cron["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        args(container(cron, "prewarm"))[..3],
        ["prewarm", "--mirror=http://127.0.0.1:65001", "--admin=http://127.0.0.1:65002"]
    );
}

#[test]
fn scheduler_less_values_render_no_scheduler_and_a_discovery_only_daemon() {
    let objects = objects(&["no-scheduler-values.yaml"], &[]);
    for (kind, name) in
        [("Deployment", "shoal-scheduler"), ("Service", "shoal-scheduler"), ("PodDisruptionBudget", "shoal-scheduler")]
    {
        assert!(
            !objects.iter().any(|o| o["kind"] == kind && o["metadata"]["name"] == name),
            "scheduler.enabled=false still renders {kind}/{name}"
        );
    }
    assert!(!has(&objects, "PodMonitor") && !has(&objects, "PrometheusRule"), "monitoring.enabled=false");
    let config = daemon_config(&objects);
    assert!(config.contains("\nschedulers = []\n"), "{config}");
    assert!(config.contains("[swarm.discovery]\nlisten = \"0.0.0.0:65006\"\nbootstrap = [\"shoal-daemon-peers.shoal.svc.cluster.local:65006\"]"), "{config}");
    assert!(config.contains("quota = \"100GiB\""), "{config}");
    assert!(
        config.contains(
            "[registries.\"registry.example.com\"]\nshare_credentials = false\nurl = \"https://registry.example.com\""
        ),
        "{config}"
    );
    assert!(config.contains("docker_config = \"/etc/shoal/docker/config.json\""), "{config}");

    let ds = find(&objects, "DaemonSet", "shoal-daemon");
    let pod = pod_spec(ds);
    let volumes = pod["volumes"].as_array().unwrap();
    let volume = |name: &str| volumes.iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("no volume {name}"));
    assert_eq!(volume("store")["hostPath"]["path"], "/mnt/fast/shoal");
    assert_eq!(volume("registry-credentials")["secret"]["secretName"], "shoal-registry-credentials");
    assert_eq!(volume("registry-credentials")["secret"]["items"][0]["key"], ".dockerconfigjson");
    let daemon = container(pod, "daemon");
    assert!(
        daemon["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "registry-credentials" && m["mountPath"] == "/etc/shoal/docker")
    );
    let configure = args(container(pod, "containerd-configure"));
    assert!(configure.contains(&"--registry=registry.example.com"), "{configure:?}");
    assert!(!configure.contains(&"--registry=quay.io"), "{configure:?}");
    assert!(configure.contains(&"--skip-containerd-check"), "{configure:?}");

    // With monitoring on, nothing watches or alerts on a scheduler that
    // does not exist (ShoalSchedulerDown would fire for ever).
    let monitored = self::objects(&["no-scheduler-values.yaml"], &["monitoring.enabled=true"]);
    assert!(has(&monitored, "PodMonitor") && !has(&monitored, "ServiceMonitor"));
    let rules = find(&monitored, "PrometheusRule", "shoal").to_string();
    assert!(rules.contains("ShoalDaemonDown"), "{rules}");
    for alert in ["ShoalSchedulerDown", "ShoalSchedulerReplicaDown", "ShoalDaemonsNotRegistered"] {
        assert!(!rules.contains(alert), "{alert} is rendered without a scheduler");
    }

    // Prewarm needs the scheduler: the chart refuses the combination.
    let err = render(&["no-scheduler-values.yaml"], &["prewarm.cronJob.enabled=true"])
        .expect_err("prewarm without scheduler");
    assert!(err.contains("prewarm.job and prewarm.cronJob need the scheduler"), "{err}");
}

#[test]
fn ha_values_reach_the_scheduler_daemon_and_secrets() {
    let objects = objects(&["ha-values.yaml"], &[]);
    let deploy = find(&objects, "Deployment", "shoal-scheduler");
    assert_eq!(deploy["spec"]["replicas"], 3, "scheduler.replicas reaches the Deployment");
    let sched = pod_spec(deploy);
    assert_eq!(sched["nodeSelector"]["node-role.example.com/infra"], "true");
    assert_eq!(sched["tolerations"][0]["key"], "dedicated");
    assert_eq!(sched["imagePullSecrets"][0]["name"], "regcred");
    let c = container(sched, "scheduler");
    assert_eq!(c["image"], format!("registry.example.com/platform/shoal:{VERSION}"));
    assert_eq!(c["imagePullPolicy"], "Always");
    let ds = find(&objects, "DaemonSet", "shoal-daemon");
    let pod = pod_spec(ds);
    assert_eq!(pod["nodeSelector"]["shoal.example.com/enabled"], "true");
    assert_eq!(pod["tolerations"], serde_json::json!([{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]));

    // The Secrets the chart makes from the PEM files, under the names the
    // pods mount, and a checksum that restarts the pods when they change.
    let ca = find(&objects, "Secret", "shoal-ca");
    assert!(ca["data"]["ca.crt"].is_string() && ca["data"]["ca.key"].is_string(), "{ca:#}");
    let tls = find(&objects, "Secret", "shoal-tls");
    for key in ["ca.crt", "tls.crt", "tls.key"] {
        assert!(tls["data"][key].is_string(), "shoal-tls lacks {key}");
    }
    assert_eq!(ca["data"]["ca.crt"], tls["data"]["ca.crt"]);
    let ca_volume = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "ca").unwrap();
    assert_eq!(ca_volume["secret"]["secretName"], "shoal-ca");
    assert!(ds["spec"]["template"]["metadata"]["annotations"]["checksum/ca"].is_string());
    assert!(deploy["spec"]["template"]["metadata"]["annotations"]["checksum/tls"].is_string());
    let other = self::objects(&["ha-values.yaml"], &["certificates.ca.key=another"]);
    assert_ne!(
        find(&other, "DaemonSet", "shoal-daemon")["spec"]["template"]["metadata"]["annotations"]["checksum/ca"],
        ds["spec"]["template"]["metadata"]["annotations"]["checksum/ca"],
        "a new CA must restart the daemons"
    );

    let sm = find(&objects, "ServiceMonitor", "shoal-scheduler");
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
    let cron = find(&objects, "CronJob", "shoal-prewarm");
    assert_eq!(cron["spec"]["schedule"], "0 3 * * 1-5");
    assert!(args(container(pod_spec(cron), "prewarm")).contains(&"--selector=zone=a"));

    let err = render(&[], &["certificates.create=true"]).expect_err("create without PEM files");
    assert!(err.contains("certificates.create=true needs certificates.ca.crt"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_less_config_starts_a_daemon() {
    let bin = shoal_bin().expect("build the binary first: cargo build -p shoal");
    let objects = objects(&[], &["scheduler.enabled=false"]);
    let config = daemon_config(&objects);
    let tmp = tempfile::tempdir().unwrap();
    let path = |p: &str| tmp.path().join(p).display().to_string();
    for a in [
        vec!["certs", "ca", "--out", &path("ca")],
        vec![
            "certs",
            "node",
            "--ca",
            &path("ca"),
            "--host",
            "chart-test",
            "--san",
            "127.0.0.1",
            "--out",
            &path("certs"),
        ],
    ] {
        let (ok, out, err) = run(Command::new(&bin).args(&a));
        assert!(ok, "shoal {a:?}: {out}{err}");
    }
    std::fs::write(tmp.path().join("config.toml"), &config).unwrap();
    // Flags move it onto loopback ports and temp dirs; the rest is the
    // rendered file, with no scheduler to ask.
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(&bin);
    cmd.arg("daemon")
        .arg("--config")
        .arg(tmp.path().join("config.toml"))
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{}", free_port()), "--metrics-listen", &metrics])
        .args(["--swarm-listen", "127.0.0.1:0", "--certs-dir", &path("certs")])
        .args(["--discovery-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--discovery-bootstrap", &format!("127.0.0.1:{}", free_port())])
        .env("NODE_NAME", "chart-test")
        .env_remove("POD_IP");
    let mut daemon = ChildGuard::spawn("daemon", cmd, tmp.path()).unwrap();
    wait_http_status(&format!("http://{metrics}/readyz"), Duration::from_secs(30), |s| s == 200, Some(&mut daemon))
        .await
        .unwrap_or_else(|e| panic!("the daemon with the scheduler-less config did not get ready: {e}"));
    daemon.terminate(Duration::from_secs(30)).await.unwrap();
}

/// The scheduler container of a render.
fn scheduler_container(objects: &[Value]) -> &Value {
    container(pod_spec(find(objects, "Deployment", "shoal-scheduler")), "scheduler")
}

/// The volume of the scheduler pod mounted at the directory holding
/// `file`, and the path inside that volume.
fn volume_holding<'a>(objects: &'a [Value], file: &str) -> (&'a Value, &'a Value) {
    let pod = pod_spec(find(objects, "Deployment", "shoal-scheduler"));
    let (dir, name) = file.rsplit_once('/').unwrap();
    let mount = container(pod, "scheduler")["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == dir)
        .unwrap_or_else(|| panic!("nothing is mounted at {dir} for {file}"));
    let volume = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == mount["name"]).unwrap();
    let source = if volume["secret"].is_object() { &volume["secret"] } else { &volume["configMap"] };
    let item = source["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["path"] == name))
        .unwrap_or_else(|| panic!("volume {} has no item {name}: {volume:#}", mount["name"]));
    (mount, item)
}

#[test]
fn harbor_values_render_the_api_flags_its_secret_and_a_sticky_service() {
    let objects = objects(&["harbor-values.yaml"], &[]);
    let c = scheduler_container(&objects);
    let a = args(c);
    for want in [
        "--harbor-listen=0.0.0.0:65007",
        "--harbor-auth=bearer",
        "--harbor-credentials-file=/etc/shoal/harbor/credentials",
        "--harbor-seed-peers=5",
        "--harbor-platforms=linux/amd64,linux/arm64",
        "--harbor-ca-bundle=/etc/shoal/harbor-ca/ca.crt",
        "--harbor-tls-cert=/etc/shoal/harbor-tls/tls.crt",
        "--harbor-tls-key=/etc/shoal/harbor-tls/tls.key",
    ] {
        assert!(a.contains(&want), "the scheduler args lack {want}: {a:?}");
    }
    // The credentials file is the chosen key of the chosen Secret, mounted
    // read-only; nothing of it is in the env or the ConfigMap.
    let (mount, item) = volume_holding(&objects, "/etc/shoal/harbor/credentials");
    assert_eq!(mount["readOnly"], true, "{mount:#}");
    assert_eq!(item["key"], "token");
    let pod = pod_spec(find(&objects, "Deployment", "shoal-scheduler"));
    let volume = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == mount["name"]).unwrap();
    assert_eq!(volume["secret"]["secretName"], "shoal-harbor-token", "{volume:#}");
    assert!(!c["env"].to_string().contains("HARBOR"), "{:#}", c["env"]);
    let (ca_mount, ca_item) = volume_holding(&objects, "/etc/shoal/harbor-ca/ca.crt");
    assert_eq!(ca_mount["readOnly"], true);
    assert_eq!(ca_item["key"], "ca.crt");
    let ca = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == ca_mount["name"]).unwrap();
    assert_eq!(ca["configMap"]["name"], "harbor-ca", "{ca:#}");
    // HTTPS by default: the kubernetes.io/tls Secret's two keys, read-only.
    for file in ["tls.crt", "tls.key"] {
        let (tls_mount, tls_item) = volume_holding(&objects, &format!("/etc/shoal/harbor-tls/{file}"));
        assert_eq!(tls_mount["readOnly"], true, "{tls_mount:#}");
        assert_eq!(tls_item["key"], file);
        let tls = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == tls_mount["name"]).unwrap();
        assert_eq!(tls["secret"]["secretName"], "shoal-harbor-tls", "{tls:#}");
    }

    let port = c["ports"].as_array().unwrap().iter().find(|p| p["name"] == "harbor").expect("a harbor port");
    assert_eq!((&port["containerPort"], &port["protocol"]), (&65007.into(), &"TCP".into()));
    // One Harbor stays on one replica: its jobs live there.
    let svc = find(&objects, "Service", "shoal-harbor");
    assert_eq!(svc["spec"]["sessionAffinity"], "ClientIP", "{svc:#}");
    assert_eq!(
        svc["spec"]["ports"],
        serde_json::json!([{"name": "harbor", "port": 65007, "targetPort": "harbor", "protocol": "TCP"}])
    );
    assert_eq!(
        svc["spec"]["selector"],
        find(&objects, "Deployment", "shoal-scheduler")["spec"]["template"]["metadata"]["labels"]
    );

    // The port and a CA bundle from a Secret follow the values.
    let moved = self::objects(
        &["harbor-values.yaml"],
        &["harbor.port=8443", "harbor.caBundle.configMap=", "harbor.caBundle.secret=harbor-ca-secret"],
    );
    assert!(args(scheduler_container(&moved)).contains(&"--harbor-listen=0.0.0.0:8443"));
    assert_eq!(find(&moved, "Service", "shoal-harbor")["spec"]["ports"][0]["port"], 8443);
    let (ca_mount, _) = volume_holding(&moved, "/etc/shoal/harbor-ca/ca.crt");
    let pod = pod_spec(find(&moved, "Deployment", "shoal-scheduler"));
    let ca = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == ca_mount["name"]).unwrap();
    assert_eq!(ca["secret"]["secretName"], "harbor-ca-secret", "{ca:#}");

    // TLS ended by a proxy in front: no TLS flags, no TLS mount.
    let proxied = self::objects(&["harbor-values.yaml"], &["harbor.tls.enabled=false"]);
    let proxied_args = args(scheduler_container(&proxied));
    assert!(!proxied_args.iter().any(|a| a.starts_with("--harbor-tls")), "{proxied_args:?}");
    assert!(proxied_args.contains(&"--harbor-listen=0.0.0.0:65007"), "{proxied_args:?}");
    let pod = pod_spec(find(&proxied, "Deployment", "shoal-scheduler"));
    assert!(!pod.to_string().contains("harbor-tls"), "{pod:#}");

    // Off by default: no flag, no Service.
    let default = self::objects(&[], &[]);
    assert!(!args(scheduler_container(&default)).iter().any(|a| a.starts_with("--harbor")));
    assert!(!default.iter().any(|o| o["metadata"]["name"] == "shoal-harbor"));
}

#[test]
fn harbor_without_authentication_or_scheduler_is_refused_naming_the_value() {
    // Off loopback the scheduler refuses to start without authentication:
    // the chart refuses to render it instead of a crash-looping pod.
    let err = render(&["harbor-values.yaml"], &["harbor.auth=none"]).expect_err("harbor.auth=none renders");
    assert!(err.contains("harbor.auth=none is refused") && err.contains("harbor.auth to bearer"), "{err}");
    let err = render(&["harbor-values.yaml"], &["scheduler.enabled=false"]).expect_err("harbor without scheduler");
    assert!(err.contains("harbor.enabled=true needs the scheduler"), "{err}");
    let err = render(&["harbor-values.yaml"], &["harbor.existingSecret="]).expect_err("harbor without credentials");
    assert!(err.contains("harbor.enabled=true needs harbor.existingSecret"), "{err}");
    let err =
        render(&["harbor-values.yaml"], &["harbor.tls.existingSecret="]).expect_err("harbor TLS without a Secret");
    assert!(err.contains("harbor.tls.enabled=true needs harbor.tls.existingSecret"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_harbor_args_start_a_scheduler_that_checks_the_token() {
    const TOKEN: &str = "chart-test-harbor-token";
    let bin = shoal_bin().expect("build the binary first: cargo build -p shoal");
    let objects = objects(&["harbor-values.yaml"], &[]);
    let rendered: Vec<String> = args(scheduler_container(&objects)).iter().map(|a| a.to_string()).collect();
    let tmp = tempfile::tempdir().unwrap();
    // Every path the pod sees lives under tmp: /etc/shoal/x is tmp/etc/shoal/x.
    let local = |p: &str| tmp.path().join(p.trim_start_matches('/'));
    let shoal = |a: &[&str]| {
        let (ok, out, err) = run(Command::new(&bin).args(a));
        assert!(ok, "shoal {a:?}: {out}{err}");
    };
    let ca_dir = tmp.path().join("pki-ca").display().to_string();
    shoal(&["certs", "ca", "--out", &ca_dir]);
    shoal(&["certs", "scheduler", "--ca", &ca_dir, "--out", &local("/etc/shoal/certs").display().to_string()]);
    // The Harbor listener's certificate, as docs/operations.md makes it.
    let harbor_tls = tmp.path().join("harbor-tls").display().to_string();
    shoal(&["certs", "node", "--ca", &ca_dir, "--host", "shoal-harbor", "--san", "127.0.0.1", "--out", &harbor_tls]);
    let read = |dir: &str, file: &str| std::fs::read_to_string(Path::new(dir).join(file)).unwrap();
    // The Secret and ConfigMap items where the rendered mounts put them.
    for (file, text) in [
        ("/etc/shoal/harbor/credentials", format!("{TOKEN}\n")),
        ("/etc/shoal/harbor-ca/ca.crt", read(&ca_dir, "ca.crt")),
        ("/etc/shoal/harbor-tls/tls.crt", read(&harbor_tls, "tls.crt")),
        ("/etc/shoal/harbor-tls/tls.key", read(&harbor_tls, "tls.key")),
    ] {
        volume_holding(&objects, file);
        std::fs::create_dir_all(local(file).parent().unwrap()).unwrap();
        std::fs::write(local(file), text).unwrap();
    }
    // Exactly the rendered args, with the listen addresses moved onto
    // free loopback ports and the paths into tmp.
    let mut harbor = None;
    let mut metrics = None;
    let adapted: Vec<String> = rendered
        .iter()
        .map(|a| match a.split_once('=') {
            Some((flag, value)) if value.starts_with("0.0.0.0:") => {
                let addr = format!("127.0.0.1:{}", free_port());
                match flag {
                    "--harbor-listen" => harbor = Some(addr.clone()),
                    "--metrics-listen" => metrics = Some(addr.clone()),
                    _ => {}
                }
                format!("{flag}={addr}")
            }
            Some((flag, value)) if value.starts_with('/') => format!("{flag}={}", local(value).display()),
            _ => a.clone(),
        })
        .collect();
    let (harbor, metrics) = (harbor.expect("a --harbor-listen arg"), metrics.expect("a --metrics-listen arg"));
    let mut cmd = Command::new(&bin);
    cmd.args(&adapted);
    let mut scheduler = ChildGuard::spawn("scheduler", cmd, tmp.path()).unwrap();
    wait_http_status(&format!("http://{metrics}/readyz"), Duration::from_secs(30), |s| s == 200, Some(&mut scheduler))
        .await
        .unwrap_or_else(|e| panic!("the scheduler with the rendered args {adapted:?} did not get ready: {e}"));
    // Harbor with the cluster CA added: HTTPS only.
    let ca = reqwest::Certificate::from_pem(read(&ca_dir, "ca.crt").as_bytes()).unwrap();
    let client = reqwest::Client::builder().no_proxy().add_root_certificate(ca).build().unwrap();
    let healthy = format!("https://{harbor}/healthy");
    let status = |req: reqwest::RequestBuilder| async move { req.send().await.unwrap().status().as_u16() };
    assert_eq!(status(client.get(&healthy).bearer_auth(TOKEN)).await, 200, "Harbor's token from the Secret");
    assert_eq!(status(client.get(&healthy)).await, 401, "no token");
    assert_eq!(status(client.get(&healthy).bearer_auth("another")).await, 401, "a wrong token");
    scheduler.terminate(Duration::from_secs(30)).await.unwrap();
}
