//! Small shared helpers: finding external programs on PATH, picking free
//! loopback ports, a loopback-only HTTP client, and polling an HTTP endpoint
//! until it answers (always with a deadline).

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::process::ChildGuard;

/// How to install each program the test kit drives.
fn install_hint(name: &str) -> String {
    let package = match name {
        "docker-registry" => "docker-registry",
        "containerd" | "ctr" => "containerd",
        "skopeo" => "skopeo",
        "umoci" => "umoci",
        "promtool" => "prometheus",
        "kill" => "procps",
        _ => {
            return format!(
                "install the package that provides `{name}` (the test command .ci/run installs \
                 everything the tests need)"
            );
        }
    };
    format!("install it with `apt-get install {package}` (the test command .ci/run does this)")
}

/// Finds `name` on PATH and returns its full path; a missing program is an
/// error (never a silent skip) whose message says how to install it.
pub fn require_tool(name: &str) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if let Ok(meta) = std::fs::metadata(&candidate)
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
        {
            return Ok(candidate);
        }
    }
    Err(Error::ToolMissing { tool: name.to_string(), hint: install_hint(name) })
}

/// The lowest port [`free_port`] hands out.
const PORT_FLOOR: u16 = 10_000;

/// Returns a port on 127.0.0.1 that is free for TCP and UDP right now.
///
/// It comes from below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`): a port from that range, even one just
/// released, may be taken a moment later as the source port of any outgoing
/// connection on the machine (CI failed once on exactly that, the daemon's
/// metrics port), while ports below it go only to programs that ask for
/// them by number. Within a process the ports never repeat (a counter from a
/// random start), so parallel tests do not pick the same one; starters still
/// retry on a bind race with another process.
pub fn free_port() -> u16 {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let ceiling = ephemeral_floor().max(PORT_FLOOR + 1_000);
    let span = u32::from(ceiling - PORT_FLOOR);
    let next = NEXT.get_or_init(|| AtomicU32::new(rand::random::<u32>() % span));
    for _ in 0..span {
        let port = PORT_FLOOR + (next.fetch_add(1, Ordering::Relaxed) % span) as u16;
        let tcp = TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 between {PORT_FLOOR} and {ceiling}");
}

/// Whether `err` is a process that exited because its port was taken in
/// the moment between [`free_port`] and its bind (the caller picks a new
/// port and tries again).
pub(crate) fn lost_port_race(err: &Error) -> bool {
    matches!(err, Error::ProcessExited { log_tail, .. } if log_tail.to_lowercase().contains("address already in use"))
}

/// The first port of the kernel's ephemeral range (32768 when unreadable).
fn ephemeral_floor() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A reqwest client for test traffic: loopback only, so it never uses the
/// environment's HTTP proxy, never follows redirects and never decompresses;
/// connects within 5 s and gives up on a request after 120 s.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(120))
        .build()
        .expect("building a plain reqwest client cannot fail")
}

/// Polls `url` until any HTTP response arrives; returns its status.
pub async fn wait_http_ok(url: &str, deadline: Duration) -> Result<u16> {
    wait_http_status(url, deadline, |_| true, None).await
}

/// Polls `url` (GET) until a response whose status satisfies `accept`
/// arrives, or `deadline` passes. When `guard` is given, fails fast with the
/// process log if that process exits while waiting.
pub async fn wait_http_status(
    url: &str,
    deadline: Duration,
    accept: impl Fn(u16) -> bool,
    mut guard: Option<&mut ChildGuard>,
) -> Result<u16> {
    let client = http_client();
    let start = Instant::now();
    loop {
        if let Some(g) = guard.as_deref_mut() {
            g.ensure_running()?;
        }
        let attempt = client.get(url).timeout(Duration::from_secs(2)).send().await;
        let last = match attempt {
            Ok(resp) => {
                let status = resp.status().as_u16();
                if accept(status) {
                    return Ok(status);
                }
                format!("last status {status}")
            }
            Err(e) => format!("last error: {e}"),
        };
        if start.elapsed() >= deadline {
            return Err(Error::NotReady {
                what: format!("HTTP endpoint {url}"),
                deadline,
                detail: last,
                log_tail: guard.map(|g| g.log_tail(4000)).unwrap_or_default(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Returns the last `max_bytes` bytes of `text` (cut at a char boundary).
pub(crate) fn tail(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut start = text.len() - max_bytes;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tool_is_an_error_that_says_how_to_install() {
        let err = require_tool("definitely-not-a-real-tool-xyz").unwrap_err();
        assert!(err.to_string().contains("not found on PATH"), "{err}");
        let hint = install_hint("docker-registry");
        assert!(hint.contains("apt-get install docker-registry"), "{hint}");
    }

    #[test]
    fn finds_sh_and_gives_distinct_ports_below_the_ephemeral_range() {
        assert!(require_tool("sh").unwrap().is_absolute());
        let ports: std::collections::HashSet<u16> = (0..200).map(|_| free_port()).collect();
        assert_eq!(ports.len(), 200, "free_port repeated a port");
        let floor = ephemeral_floor();
        assert!(ports.iter().all(|&p| p >= PORT_FLOOR && p < floor.max(PORT_FLOOR + 1_000)), "{ports:?} vs {floor}");
    }

    #[test]
    fn only_an_exit_on_a_taken_address_is_a_lost_port_race() {
        use std::os::unix::process::ExitStatusExt;
        let exited = |log: &str| Error::ProcessExited {
            what: "shoal-daemon".into(),
            pid: 1,
            status: std::process::ExitStatus::from_raw(256),
            log_tail: log.into(),
        };
        let daemon = "error: binding metrics to 127.0.0.1:41917: Address already in use (os error 98)";
        assert!(lost_port_race(&exited(daemon)));
        assert!(lost_port_race(&exited("listen tcp 127.0.0.1:5000: bind: address already in use")));
        assert!(!lost_port_race(&exited("error: config: unknown key `lisen`")));
        let missing = Error::ToolMissing { tool: "x".into(), hint: "address already in use".into() };
        assert!(!lost_port_race(&missing));
    }

    #[test]
    fn tail_cuts_at_char_boundary() {
        assert_eq!(tail("héllo", 4), "llo");
        assert_eq!(tail("abc", 10), "abc");
    }
}
