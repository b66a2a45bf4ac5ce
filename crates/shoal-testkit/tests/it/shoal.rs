//! The ShoalDaemon runner, driven against a stand-in binary (a shell script
//! serving its data dir over HTTP with python3), since the real `shoal`
//! binary is built elsewhere.

use std::path::Path;

use shoal_testkit::ShoalDaemon;

const FAKE: &str = r#"#!/bin/sh
while [ $# -gt 0 ]; do
  case "$1" in
    --config) C=$2; shift;;
    --listen) L=$2; shift;;
    --metrics-listen) M=$2; shift;;
    --data-dir) D=$2; shift;;
  esac
  shift
done
mkdir -p "$D/www"
echo ok > "$D/www/readyz"
cp "$C" "$D/www/config"
echo "$L" > "$D/www/listen"
echo start >> "$D/starts"
exec python3 -m http.server "${M##*:}" --bind "${M%:*}" --directory "$D/www"
"#;

async fn get(url: &str) -> String {
    shoal_testkit::tools::http_client().get(url).send().await.unwrap().text().await.unwrap()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn runner_writes_config_waits_restarts_and_kills() {
    use std::os::unix::fs::PermissionsExt;
    shoal_testkit::require_tool("python3").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("fake-shoal");
    std::fs::write(&bin, FAKE).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = dir.path().join("data");

    let mut d = ShoalDaemon::builder()
        .bin(&bin)
        .data_dir(&data)
        .default_registry("docker.io")
        .registry("127.0.0.1:5000", "http://127.0.0.1:5000")
        .config_toml("[store]\nquota = \"20GiB\"")
        .start()
        .await
        .unwrap();
    let config: toml::Value = toml::from_str(&get(&format!("{}/config", d.metrics_url())).await).unwrap();
    assert_eq!(config["store"]["quota"].as_str(), Some("20GiB"));
    assert_eq!(config["registries"]["127.0.0.1:5000"]["url"].as_str(), Some("http://127.0.0.1:5000"));
    let listen = get(&format!("{}/listen", d.metrics_url())).await;
    assert_eq!(listen.trim(), d.mirror_host());
    assert_eq!(d.mirror_url(), format!("http://{}", d.mirror_host()));

    let (pid, metrics) = (d.pid().unwrap(), d.metrics_url());
    d.restart().await.unwrap();
    assert!(!alive(pid));
    assert_ne!(d.pid().unwrap(), pid);
    assert_eq!(d.metrics_url(), metrics, "same ports after restart");
    assert_eq!(std::fs::read_to_string(data.join("starts")).unwrap(), "start\nstart\n");

    d.terminate().await.unwrap();
    let pid = d.pid().unwrap();
    assert!(!alive(pid));
    d.restart().await.unwrap();
    let pid = d.pid().unwrap();
    d.kill9().unwrap();
    assert!(!alive(pid));
    d.restart().await.unwrap();
    let pid = d.pid().unwrap();
    drop(d);
    assert!(!alive(pid), "dropped daemon is killed");
    assert!(data.join("starts").exists(), "a given data dir is kept");
}

#[tokio::test]
async fn a_daemon_that_dies_at_start_is_an_error_with_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("dying-shoal");
    std::fs::write(&bin, "#!/bin/sh\necho 'config is broken' >&2\nexit 2\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = ShoalDaemon::builder().bin(&bin).start().await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("config is broken") && msg.contains("exit status: 2"), "{msg}");
}
