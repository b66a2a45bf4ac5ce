//! The operator-facing `deploy/` tree: Kubernetes manifests validated
//! offline with `kubernetes-validate --strict` (PyPI; `scripts/test`
//! installs it), the Prometheus Operator objects checked by structure and
//! with `promtool check rules`, the Grafana dashboard's queries parsed by
//! promtool, and every metric name used by the dashboard, the alerts and
//! docs/metrics.md checked against what real `shoal daemon` and
//! `shoal scheduler` processes export. The daemon runs with the config file
//! shipped in the ConfigMap, so that file must also be one it accepts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use shoal_e2e::k8s::{args, container};
use shoal_testkit::{ChildGuard, free_port, require_tool, shoal_bin, wait_http_status};

/// The Kubernetes version the manifests are validated against (its schemas
/// ship inside kubernetes-validate, so this works offline).
const KUBERNETES_VERSION: &str = "1.34.0";

/// Kinds outside kubernetes-validate's schema set, checked structurally by
/// this file instead.
const CUSTOM_KINDS: &[(&str, &str)] = &[
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("kustomize.config.k8s.io/v1beta1", "Kustomization"),
];

/// Alerts the operations guide promises.
const REQUIRED_ALERTS: &[&str] = &[
    "ShoalDaemonDown",
    "ShoalSchedulerDown",
    "ShoalOriginShareHigh",
    "ShoalVerificationFailures",
    "ShoalStoreAlmostFull",
    "ShoalPullsFailing",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

fn kube_dir() -> PathBuf {
    repo().join("deploy/kubernetes")
}

/// Every YAML file under deploy/kubernetes, sorted.
fn kube_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(kube_dir())
        .expect("read deploy/kubernetes")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "deploy/kubernetes holds too few manifests: {files:?}");
    files
}

fn tool(name: &str) -> PathBuf {
    require_tool(name).unwrap_or_else(|e| {
        panic!(
            "{e}\n{name} is required by this test (never skipped): run scripts/test, which installs it \
             (kubernetes-validate: `python3 -m pip install kubernetes-validate`)"
        )
    })
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The YAML documents of `path` as JSON values (PyYAML, which
/// kubernetes-validate depends on, does the parsing).
fn yaml_docs(path: &Path) -> Vec<Value> {
    const SCRIPT: &str = "import json, sys, yaml\n\
        docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]\n\
        print(json.dumps(docs))\n";
    let (ok, text) = run(Command::new(tool("python3")).arg("-c").arg(SCRIPT).arg(path));
    assert!(
        ok,
        "parsing {} as YAML failed (PyYAML comes with kubernetes-validate; run scripts/test):\n{text}",
        path.display()
    );
    match serde_json::from_str(&text) {
        Ok(Value::Array(docs)) => docs,
        other => panic!("{}: unexpected parse result {other:?}", path.display()),
    }
}

/// Every object of every manifest, with the file it came from.
fn all_objects() -> Vec<(String, Value)> {
    let mut objects = Vec::new();
    for f in kube_files() {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        for d in yaml_docs(&f) {
            objects.push((name.clone(), d));
        }
    }
    objects
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_else(|| panic!("missing string {pointer} in {v:#}"))
}

fn find<'a>(objects: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .map(|(_, o)| o)
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} named {name} under deploy/kubernetes"))
}

fn is_custom(o: &Value) -> bool {
    CUSTOM_KINDS.iter().any(|(api, kind)| o["apiVersion"] == *api && o["kind"] == *kind)
}

#[test]
fn every_kubernetes_object_validates_strictly() {
    let kv = tool("kubernetes-validate");
    // The tool must reject what it does not know: an unexpected field fails.
    let bad = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(bad.path(), "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\nbogus: 1\n").unwrap();
    let (ok, text) =
        run(Command::new(&kv).args(["--strict", "--kubernetes-version", KUBERNETES_VERSION]).arg(bad.path()));
    assert!(!ok, "kubernetes-validate --strict accepted an unknown field:\n{text}");

    let files = kube_files();
    let (ok, text) = run(Command::new(&kv).args(["--strict", "--kubernetes-version", KUBERNETES_VERSION]).args(&files));
    assert!(ok, "kubernetes-validate --strict -k {KUBERNETES_VERSION} failed:\n{text}");
    assert!(!text.contains("ERROR"), "kubernetes-validate reported errors:\n{text}");
    let short = KUBERNETES_VERSION.rsplit_once('.').unwrap().0;
    let mut core = 0;
    for (file, o) in all_objects() {
        if is_custom(&o) {
            continue;
        }
        let kind = s(&o, "/kind");
        let name = s(&o, "/metadata/name");
        let line = format!("{file} passed for resource {}/{name} against version {short}", kind.to_lowercase());
        assert!(text.contains(&line), "{kind}/{name} in {file} was not strictly validated (no {line:?}):\n{text}");
        core += 1;
    }
    assert!(core >= 9, "only {core} core objects were validated");
    // A missing schema is acceptable only for the custom kinds.
    for line in text.lines().filter(|l| l.starts_with("WARN")) {
        assert!(
            CUSTOM_KINDS.iter().any(|(api, kind)| line.contains(&format!("kind {kind} with api version {api}"))),
            "unexpected warning: {line}"
        );
    }
}

#[test]
fn kustomization_applies_every_manifest_and_no_key_is_committed() {
    let k = yaml_docs(&kube_dir().join("kustomization.yaml")).remove(0);
    assert_eq!(k["kind"], "Kustomization");
    assert_eq!(k["namespace"], "shoal");
    let listed: BTreeSet<String> =
        k["resources"].as_array().expect("resources").iter().map(|r| r.as_str().unwrap().to_string()).collect();
    let present: BTreeSet<String> = kube_files()
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().to_string())
        .filter(|f| f != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present, "kustomization.yaml resources must be exactly the manifests beside it");

    // The Secrets are generated from files the operator makes with
    // `shoal certs`; their directory is git-ignored.
    let generators = k["secretGenerator"].as_array().expect("secretGenerator");
    let files = |name: &str| -> Vec<String> {
        let g = generators.iter().find(|g| g["name"] == name).unwrap_or_else(|| panic!("no {name} secretGenerator"));
        g["files"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect()
    };
    assert_eq!(files("shoal-ca"), ["pki/ca/ca.crt", "pki/ca/ca.key"]);
    assert_eq!(files("shoal-tls"), ["pki/scheduler/ca.crt", "pki/scheduler/tls.crt", "pki/scheduler/tls.key"]);
    let ignore = std::fs::read_to_string(kube_dir().join(".gitignore")).expect("deploy/kubernetes/.gitignore");
    assert!(ignore.lines().any(|l| l.trim() == "pki/"), "pki/ must be git-ignored");
    let out = Command::new("git").args(["ls-files", "deploy"]).current_dir(repo()).output();
    if let Ok(out) = out
        && out.status.success()
    {
        for f in String::from_utf8_lossy(&out.stdout).lines() {
            assert!(!f.contains("/pki/"), "{f} must not be committed");
        }
    }
    let mut stack = vec![repo().join("deploy")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.ends_with("pki") {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                let text = std::fs::read(&p).unwrap();
                assert!(
                    !String::from_utf8_lossy(&text).contains("PRIVATE KEY-----"),
                    "{} holds a private key",
                    p.display()
                );
            }
        }
    }

    for (file, o) in all_objects() {
        if o["kind"] == "Kustomization" || o["kind"] == "Namespace" {
            continue;
        }
        assert_eq!(o["metadata"]["namespace"], "shoal", "{file}: {} must be in the shoal namespace", o["kind"]);
    }
}

fn assert_probes_and_resources(c: &Value, port: &str) {
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{c:#}");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{c:#}");
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(c[probe]["httpGet"]["port"], port, "{probe} of {}", c["name"]);
    }
    for k in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(c["resources"][k][r].is_string(), "{} needs resources.{k}.{r}", c["name"]);
        }
    }
}

fn port_number(c: &Value, name: &str) -> u64 {
    c["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("{} has no port named {name}", c["name"]))
}

#[test]
fn workloads_meet_the_operating_requirements() {
    let objects = all_objects();

    let ds = find(&objects, "DaemonSet", "shoal-daemon");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet", "host-network pods resolve Service names only so");
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    let strategy = &ds["spec"]["updateStrategy"];
    assert_eq!(strategy["type"], "RollingUpdate");
    let unavailable = &strategy["rollingUpdate"]["maxUnavailable"];
    let never_all = match unavailable {
        Value::Number(n) => n.as_u64().is_some_and(|n| (1..=3).contains(&n)),
        Value::String(p) => {
            p.strip_suffix('%').and_then(|p| p.parse::<u32>().ok()).is_some_and(|p| (1..=25).contains(&p))
        }
        _ => false,
    };
    assert!(never_all, "maxUnavailable {unavailable} may take every node down");
    // The image runs as 65532 (scripts/build-image); the daemon writes
    // root-owned hostPath directories, so its pod asks for root, and the
    // other pods stay non-root.
    assert_eq!(pod["securityContext"]["runAsUser"], 0, "the daemon must run as root for its hostPath dirs");
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(grace > 20, "terminationGracePeriodSeconds {grace} must exceed shutdown_grace (20s)");

    // Each node issues itself a certificate named after the node (the
    // scheduler accepts a host only under its certificate's name) and
    // listing the IP it advertises (the scheduler accepts that address
    // whichever source address the node's packets carry) into memory, from
    // the CA Secret.
    let issue = container(pod, "issue-certificate");
    assert_eq!(args(issue)[..2], ["certs", "node"]);
    assert!(args(issue).contains(&"--host=$(NODE_NAME)"), "{:?}", args(issue));
    assert!(args(issue).contains(&"--san=$(POD_IP)"), "{:?}", args(issue));
    assert_eq!(issue["env"][0]["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");
    assert_eq!(issue["env"][1]["name"], "POD_IP");
    assert_eq!(issue["env"][1]["valueFrom"]["fieldRef"]["fieldPath"], "status.podIP");
    let init = container(pod, "containerd-configure");
    let a = args(init);
    assert_eq!(&a[..2], ["containerd", "configure"]);
    assert!(a.contains(&"--mirror=http://127.0.0.1:65001"), "{a:?}");
    assert!(a.contains(&"--certs-dir=/etc/containerd/certs.d"), "{a:?}");
    assert!(a.iter().any(|x| x.starts_with("--registry=")), "{a:?}");
    assert!(init["resources"]["limits"].is_object());

    let daemon = container(pod, "daemon");
    assert_eq!(args(daemon)[0], "daemon");
    assert_probes_and_resources(daemon, "metrics");
    assert_eq!(port_number(daemon, "metrics"), 65002);
    assert_eq!(port_number(daemon, "swarm"), 65003);
    assert_eq!(port_number(daemon, "discovery"), 65006);
    // The discovery bootstrap names a headless Service of every daemon,
    // ready or not, on the port the daemons listen on.
    let peers = find(&objects, "Service", "shoal-daemon-peers");
    assert_eq!(peers["spec"]["clusterIP"], "None");
    assert_eq!(peers["spec"]["publishNotReadyAddresses"], true);
    assert_eq!(peers["spec"]["selector"], ds["spec"]["template"]["metadata"]["labels"]);
    assert_eq!(peers["spec"]["ports"][0]["port"], 65006);
    let config = daemon_config(&objects);
    assert!(config.contains("shoal-daemon-peers.shoal.svc.cluster.local:65006"), "{config}");
    let env: BTreeMap<&str, &str> = daemon["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?, e["valueFrom"]["fieldRef"]["fieldPath"].as_str()?)))
        .collect();
    assert_eq!(env.get("NODE_NAME"), Some(&"spec.nodeName"));
    assert_eq!(env.get("POD_IP"), Some(&"status.podIP"));
    let volumes = pod["volumes"].as_array().unwrap();
    let host_path = |name: &str| {
        volumes.iter().find(|v| v["name"] == name).and_then(|v| v["hostPath"]["path"].as_str()).map(str::to_string)
    };
    let mounts = |c: &Value| -> BTreeMap<String, String> {
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["name"].as_str().unwrap().to_string(), m["mountPath"].as_str().unwrap().to_string()))
            .collect()
    };
    assert_eq!(host_path("store").as_deref(), Some("/var/lib/shoal"), "the store lives on a hostPath");
    assert_eq!(mounts(daemon).get("store").map(String::as_str), Some("/var/lib/shoal"));
    assert_eq!(host_path("containerd-certs").as_deref(), Some("/etc/containerd/certs.d"));
    assert_eq!(mounts(init).get("containerd-certs").map(String::as_str), Some("/etc/containerd/certs.d"));
    let certs = volumes.iter().find(|v| v["name"] == "certs").expect("a certs volume");
    assert_eq!(certs["emptyDir"]["medium"], "Memory");
    let ca = volumes.iter().find(|v| v["name"] == "ca").expect("a ca volume");
    assert_eq!(ca["secret"]["secretName"], "shoal-ca");
    assert_eq!(mounts(issue).get("certs"), mounts(daemon).get("certs"));
    assert!(args(daemon).contains(&"--config=/etc/shoal/config.toml"));
    assert_eq!(mounts(daemon).get("config").map(String::as_str), Some("/etc/shoal/config.toml"));

    // The admin port the probes use listens on loopback and the node's IP,
    // not on every address of the node.
    let config = daemon_config(&objects);
    assert!(args(daemon).contains(&"--metrics-listen=127.0.0.1:65002,$(POD_IP):65002"), "{:?}", args(daemon));
    assert!(!config.contains("metrics_listen"), "the DaemonSet's flag sets the admin addresses:\n{config}");
    assert!(config.contains("listen = \"127.0.0.1:65001\""), "the mirror must stay on loopback:\n{config}");
    assert!(config.contains("shoal-scheduler.shoal.svc.cluster.local:65004"), "{config}");

    let deploy = find(&objects, "Deployment", "shoal-scheduler");
    assert_eq!(deploy["spec"]["replicas"], 2);
    let sched = container(&deploy["spec"]["template"]["spec"], "scheduler");
    assert_eq!(args(sched)[0], "scheduler");
    assert_probes_and_resources(sched, "metrics");
    assert_eq!(port_number(sched, "quic"), 65004);
    assert_eq!(port_number(sched, "metrics"), 65005);
    let svc = find(&objects, "Service", "shoal-scheduler");
    assert_eq!(svc["spec"]["clusterIP"], "None", "the scheduler Service must be headless");
    assert_eq!(svc["spec"]["selector"], deploy["spec"]["selector"]["matchLabels"]);
    let ports: Vec<(u64, &str)> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["port"].as_u64().unwrap(), p["protocol"].as_str().unwrap_or("TCP")))
        .collect();
    assert!(ports.contains(&(65004, "UDP")) && ports.contains(&(65005, "TCP")), "{ports:?}");

    let job = find(&objects, "Job", "shoal-prewarm-example");
    let cron = find(&objects, "CronJob", "shoal-prewarm");
    for pod in [&job["spec"]["template"]["spec"], &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]] {
        let a = args(container(pod, "prewarm"));
        assert_eq!(a[0], "prewarm");
        assert!(a.contains(&"--mirror=http://127.0.0.1:65001"), "prewarm goes through the node's own mirror: {a:?}");
        assert_eq!(pod["hostNetwork"], true, "the node's mirror listens on its loopback");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "prewarm runs as non-root");
    }
    let sched_pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(sched_pod["securityContext"]["runAsNonRoot"], true, "the scheduler runs as non-root");
    assert_eq!(sched_pod["securityContext"]["runAsUser"], 65532);
}

/// The daemon's config.toml from the ConfigMap.
fn daemon_config(objects: &[(String, Value)]) -> String {
    s(find(objects, "ConfigMap", "shoal-config"), "/data/config.toml").to_string()
}

fn promtool_check_rules(rules: &Value, what: &str) {
    let promtool = tool("promtool");
    let file = tempfile::Builder::new().suffix(".yml").tempfile().unwrap();
    // JSON is YAML: promtool reads it as a rule file.
    std::fs::write(file.path(), serde_json::to_string_pretty(rules).unwrap()).unwrap();
    let (ok, text) = run(Command::new(promtool).args(["check", "rules"]).arg(file.path()));
    assert!(ok, "promtool check rules rejected {what}:\n{text}");
}

#[test]
fn monitoring_objects_are_well_formed_and_the_rules_pass_promtool() {
    let objects = all_objects();
    let ds = find(&objects, "DaemonSet", "shoal-daemon");
    let pm = find(&objects, "PodMonitor", "shoal-daemon");
    assert_eq!(pm["apiVersion"], "monitoring.coreos.com/v1");
    let pod_labels = &ds["spec"]["template"]["metadata"]["labels"];
    for (k, v) in pm["spec"]["selector"]["matchLabels"].as_object().expect("PodMonitor matchLabels") {
        assert_eq!(&pod_labels[k], v, "PodMonitor selects {k}={v}, which the daemon pods lack");
    }
    let endpoints = pm["spec"]["podMetricsEndpoints"].as_array().expect("podMetricsEndpoints");
    assert!(!endpoints.is_empty());
    for e in endpoints {
        port_number(container(&ds["spec"]["template"]["spec"], "daemon"), s(e, "/port"));
        assert_eq!(e["path"], "/metrics");
    }

    let svc = find(&objects, "Service", "shoal-scheduler");
    let sm = find(&objects, "ServiceMonitor", "shoal-scheduler");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().expect("ServiceMonitor matchLabels") {
        assert_eq!(&svc["metadata"]["labels"][k], v, "ServiceMonitor selects {k}={v}, which the Service lacks");
    }
    for e in sm["spec"]["endpoints"].as_array().expect("endpoints") {
        let port = s(e, "/port");
        assert!(svc["spec"]["ports"].as_array().unwrap().iter().any(|p| p["name"] == port), "no Service port {port}");
    }

    // The job label the alerts select on is the one the monitors set.
    for (monitor, job) in [(pm, "shoal-daemon"), (sm, "shoal-scheduler")] {
        let eps =
            monitor["spec"]["podMetricsEndpoints"].as_array().or(monitor["spec"]["endpoints"].as_array()).unwrap();
        for e in eps {
            let sets_job = e["relabelings"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["targetLabel"] == "job" && r["replacement"] == job));
            assert!(sets_job, "{} must set job={job}", monitor["kind"]);
        }
    }

    let rule = find(&objects, "PrometheusRule", "shoal");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    let groups = rule["spec"]["groups"].as_array().expect("spec.groups");
    let mut alerts = BTreeSet::new();
    for g in groups {
        assert!(g["name"].is_string());
        for r in g["rules"].as_array().expect("rules") {
            let name = s(r, "/alert");
            assert!(s(r, "/expr").contains("shoal") || s(r, "/expr").contains("up{"), "{name}");
            assert!(
                ["warning", "critical"].contains(&s(r, "/labels/severity")),
                "{name}: severity must be warning or critical"
            );
            assert!(!s(r, "/annotations/summary").is_empty());
            assert!(!s(r, "/annotations/description").is_empty());
            alerts.insert(name.to_string());
        }
    }
    for a in REQUIRED_ALERTS {
        assert!(alerts.contains(*a), "missing alert {a}; have {alerts:?}");
    }
    let jobs_used: Vec<&str> = ["job=\"shoal-daemon\"", "job=\"shoal-scheduler\""].to_vec();
    let rule_text = rule.to_string();
    for j in jobs_used {
        assert!(rule_text.contains(&j.replace('"', "\\\"")), "alerts never select {j}");
    }
    promtool_check_rules(&rule["spec"], "the PrometheusRule's groups");
}

/// The dashboard's PromQL queries with Grafana's variables replaced.
fn dashboard_queries(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dash];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(m) => {
                if let (Some(Value::String(e)), Some(Value::String(r))) = (m.get("expr"), m.get("refId")) {
                    out.push((r.clone(), e.clone()));
                }
                stack.extend(m.values());
            }
            Value::Array(a) => stack.extend(a.iter()),
            _ => {}
        }
    }
    out
}

fn grafana_to_promql(expr: &str) -> String {
    let e = expr
        .replace("$__rate_interval", "5m")
        .replace("$__range", "1h")
        .replace("$__interval", "1m")
        .replace("${instance}", ".*")
        .replace("$instance", ".*");
    assert!(!e.contains('$'), "unknown Grafana variable in {expr}");
    e
}

fn dashboard() -> Value {
    let path = repo().join("deploy/grafana/shoal.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("read deploy/grafana/shoal.json"))
        .expect("deploy/grafana/shoal.json is JSON")
}

#[test]
fn dashboard_is_well_formed_and_its_queries_parse() {
    let dash = dashboard();
    assert_eq!(dash["uid"], "shoal");
    let panels = dash["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut titles = Vec::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().expect("panel id")), "duplicate panel id {}", p["id"]);
        assert!(p["gridPos"]["w"].is_u64() && p["gridPos"]["h"].is_u64());
        if p["type"] == "row" {
            continue;
        }
        titles.push(s(p, "/title").to_lowercase());
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{} must use the datasource variable", p["title"]);
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{} has no query", p["title"]);
        for t in targets {
            assert!(!s(t, "/expr").is_empty());
        }
    }
    for want in
        ["p2p share", "origin egress", "latency", "active downloads", "store usage", "verification", "hosts", "tasks"]
    {
        assert!(titles.iter().any(|t| t.contains(want)), "no panel about {want:?}: {titles:?}");
    }
    // promtool parses each query when it is wrapped in a recording rule.
    let queries = dashboard_queries(&dash);
    assert!(queries.len() >= 20, "only {} queries", queries.len());
    let rules: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(i, (_, e))| serde_json::json!({"record": format!("dashboard:query{i}"), "expr": grafana_to_promql(e)}))
        .collect();
    promtool_check_rules(
        &serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]}),
        "the dashboard's queries",
    );
}

/// Metric names (`shoal_…`) used anywhere in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while let Some(at) = text[i..].find("shoal_") {
        let start = i + at;
        let word_start = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start + "shoal_".len();
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase() || bytes[end].is_ascii_digit() || bytes[end] == b'_')
        {
            end += 1;
        }
        if word_start && end > start + "shoal_".len() {
            names.insert(text[start..end].to_string());
        }
        i = end;
    }
    names
}

/// What an exposition exports: (family names from `# TYPE`, every series
/// name a query may use: histograms as `_bucket`, `_sum`, `_count`).
fn exported(exposition: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut families = BTreeSet::new();
    let mut series = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            families.insert(name.to_string());
            match kind {
                "histogram" | "summary" => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        series.insert(format!("{name}{suffix}"));
                    }
                }
                _ => {
                    series.insert(name.to_string());
                }
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            series.insert(line[..end].to_string());
        }
    }
    (families, series)
}

/// Names in `used` that are not exported series.
fn unknown(used: &BTreeSet<String>, series: &BTreeSet<String>) -> Vec<String> {
    used.iter().filter(|n| !series.contains(*n)).cloned().collect()
}

#[test]
fn the_metric_check_catches_a_misspelling() {
    let exposition = "# TYPE shoal_store_bytes gauge\nshoal_store_bytes 0\n\
                      # TYPE shoal_mirror_request_duration_seconds histogram\n";
    let (_, series) = exported(exposition);
    let used = metric_names(
        r#"{"expr": "shoal_store_byte / x{a=\"noshoal_x\"} + rate(shoal_mirror_request_duration_seconds_bucket[5m])"}"#,
    );
    assert_eq!(used.iter().collect::<Vec<_>>(), ["shoal_mirror_request_duration_seconds_bucket", "shoal_store_byte"]);
    assert_eq!(unknown(&used, &series), ["shoal_store_byte"]);
    // A histogram's bare family name matches no series.
    let bare = metric_names("histogram_quantile(0.9, rate(shoal_mirror_request_duration_seconds[5m]))");
    assert_eq!(unknown(&bare, &series), ["shoal_mirror_request_duration_seconds"]);
}

async fn scrape(url: &str) -> String {
    let resp = reqwest::Client::builder().no_proxy().build().unwrap().get(url).send().await.expect("scrape");
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    resp.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_alerts_and_docs_use_only_exported_metrics() {
    let bin = shoal_bin().expect("build the binary first: cargo build -p shoal");
    let tmp = tempfile::tempdir().unwrap();
    let shoal = |args: &[String]| {
        let (ok, text) = run(Command::new(&bin).args(args));
        assert!(ok, "shoal {args:?} failed:\n{text}");
    };
    let path = |p: &str| tmp.path().join(p).display().to_string();
    // The certificates as docs/operations.md makes them, and the node's as
    // the DaemonSet's init container issues it (its very arguments).
    shoal(&["certs".into(), "ca".into(), "--out".into(), path("pki/ca")]);
    let scheduler_certs = path("pki/scheduler");
    shoal(&[
        "certs".into(),
        "scheduler".into(),
        "--ca".into(),
        path("pki/ca"),
        "--out".into(),
        scheduler_certs.clone(),
    ]);
    let objects = all_objects();
    let ds = find(&objects, "DaemonSet", "shoal-daemon");
    let issue: Vec<String> = args(container(&ds["spec"]["template"]["spec"], "issue-certificate"))
        .iter()
        .map(|a| {
            a.replace("$(NODE_NAME)", "deploy-test")
                .replace("$(POD_IP)", "127.0.0.1")
                .replace("/etc/shoal/ca", &path("pki/ca"))
                .replace("/etc/shoal/certs", &path("node-certs"))
        })
        .collect();
    shoal(&issue);

    let quic = format!("127.0.0.1:{}", free_port());
    let sched_metrics = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(&bin);
    cmd.args(["scheduler", "--listen", &quic, "--metrics-listen", &sched_metrics, "--certs-dir", &scheduler_certs]);
    let mut scheduler = ChildGuard::spawn("scheduler", cmd, tmp.path()).unwrap();
    let ready = |addr: &str| format!("http://{addr}/readyz");
    wait_http_status(&ready(&sched_metrics), Duration::from_secs(20), |s| s == 200, Some(&mut scheduler))
        .await
        .unwrap();

    // The daemon runs with the ConfigMap's config file; flags move it onto
    // free loopback ports, a temp store and the test's scheduler.
    let config = tmp.path().join("config.toml");
    std::fs::write(&config, daemon_config(&objects)).unwrap();
    let daemon_metrics = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(&bin);
    cmd.arg("daemon")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{}", free_port()), "--metrics-listen", &daemon_metrics])
        .args(["--swarm-listen", "127.0.0.1:0", "--scheduler", &quic, "--certs-dir", &path("node-certs")])
        .args(["--discovery-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--discovery-bootstrap", &format!("127.0.0.1:{}", free_port())])
        .env("NODE_NAME", "deploy-test")
        .env_remove("POD_IP");
    let mut daemon = ChildGuard::spawn("daemon", cmd, tmp.path()).unwrap();
    wait_http_status(&ready(&daemon_metrics), Duration::from_secs(30), |s| s == 200, Some(&mut daemon))
        .await
        .unwrap_or_else(|e| panic!("the daemon with the ConfigMap's config did not get ready: {e}"));

    // The shipped [swarm] section works: the daemon registers.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let sched_text = loop {
        let text = scrape(&format!("http://{sched_metrics}/metrics")).await;
        if text.lines().any(|l| l == "shoal_scheduler_hosts 1") {
            break text;
        }
        assert!(tokio::time::Instant::now() < deadline, "the daemon never registered:\n{}", daemon.log_tail(4000));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let daemon_text = scrape(&format!("http://{daemon_metrics}/metrics")).await;
    let (mut families, mut series) = exported(&daemon_text);
    let (f2, s2) = exported(&sched_text);
    families.extend(f2);
    series.extend(s2);
    assert!(families.iter().filter(|f| f.starts_with("shoal_scheduler_")).count() >= 5, "{families:?}");
    assert!(families.len() >= 20, "{families:?}");

    let dash_names = metric_names(&std::fs::read_to_string(repo().join("deploy/grafana/shoal.json")).unwrap());
    let rule_names = metric_names(&std::fs::read_to_string(kube_dir().join("alerts.yaml")).unwrap());
    assert!(dash_names.len() >= 15, "the dashboard uses only {dash_names:?}");
    assert!(rule_names.len() >= 6, "the alerts use only {rule_names:?}");
    for (what, used) in [("deploy/grafana/shoal.json", &dash_names), ("deploy/kubernetes/alerts.yaml", &rule_names)] {
        let bad = unknown(used, &series);
        assert!(bad.is_empty(), "{what} uses metrics no process exports: {bad:?}\nexported: {series:?}");
    }

    // docs/metrics.md documents every family and names no other metric.
    let doc = std::fs::read_to_string(repo().join("docs/metrics.md")).expect("docs/metrics.md");
    let documented = metric_names(&doc);
    for f in &families {
        assert!(documented.contains(f), "docs/metrics.md does not document {f}");
    }
    let mut known = series.clone();
    known.extend(families.iter().cloned());
    let bad = unknown(&documented, &known);
    assert!(bad.is_empty(), "docs/metrics.md names metrics no process exports: {bad:?}");

    daemon.terminate(Duration::from_secs(30)).await.unwrap();
    scheduler.terminate(Duration::from_secs(10)).await.unwrap();
}
