//! `ChildGuard`: owns one long-running external process (registry,
//! containerd, shoal daemon). Its stdout/stderr go to log files in a directory
//! the caller owns; it is killed by PID on drop, even when a test panics.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, IoContext, Result};
use crate::tools::{require_tool, tail};

/// Environment variables that could route loopback test traffic through a
/// proxy; removed from every process the test kit starts.
pub(crate) const PROXY_VARS: &[&str] =
    &["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"];

/// A running child process, killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Child,
    pid: u32,
    stdout_log: PathBuf,
    stderr_log: PathBuf,
    exited: Option<ExitStatus>,
}

impl ChildGuard {
    /// Spawns `cmd` with stdin closed and stdout/stderr appended to
    /// `<log_dir>/<name>.stdout.log` / `.stderr.log` (appending keeps the
    /// logs of earlier runs after a restart). Proxy variables are removed.
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Result<Self> {
        let stdout_log = log_dir.join(format!("{name}.stdout.log"));
        let stderr_log = log_dir.join(format!("{name}.stderr.log"));
        let open = |p: &Path| -> Result<File> {
            OpenOptions::new().create(true).append(true).open(p).ctx(|| format!("opening log file {}", p.display()))
        };
        for var in PROXY_VARS {
            cmd.env_remove(var);
        }
        cmd.stdin(Stdio::null()).stdout(open(&stdout_log)?).stderr(open(&stderr_log)?);
        let child = cmd.spawn().ctx(|| format!("spawning {name}: {:?}", cmd))?;
        let pid = child.id();
        tracing::debug!(name, pid, "spawned");
        Ok(ChildGuard { name: name.to_string(), child, pid, stdout_log, stderr_log, exited: None })
    }

    /// The process's role name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Path of the stdout log file.
    pub fn stdout_log(&self) -> &Path {
        &self.stdout_log
    }

    /// Path of the stderr log file.
    pub fn stderr_log(&self) -> &Path {
        &self.stderr_log
    }

    /// The last `max_bytes` of the stderr log followed by the stdout log.
    pub fn log_tail(&self, max_bytes: usize) -> String {
        let read = |p: &Path| std::fs::read(p).unwrap_or_default();
        let err = read(&self.stderr_log);
        let out = read(&self.stdout_log);
        let err = String::from_utf8_lossy(&err);
        let out = String::from_utf8_lossy(&out);
        let mut s = format!("--- {} stderr ({}) ---\n{}", self.name, self.stderr_log.display(), tail(&err, max_bytes));
        if !out.trim().is_empty() {
            s.push_str(&format!(
                "\n--- {} stdout ({}) ---\n{}",
                self.name,
                self.stdout_log.display(),
                tail(&out, max_bytes)
            ));
        }
        s
    }

    /// Returns the exit status if the process has exited (without blocking).
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            self.exited =
                self.child.try_wait().ctx(|| format!("checking whether {} (pid {}) exited", self.name, self.pid))?;
        }
        Ok(self.exited)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// Errors with [`Error::ProcessExited`] (including the log tail) if the
    /// process has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.try_wait()? {
            None => Ok(()),
            Some(status) => Err(Error::ProcessExited {
                what: self.name.clone(),
                pid: self.pid,
                status,
                log_tail: self.log_tail(4000),
            }),
        }
    }

    /// Hard kill (like `kill -9`), then reap. Returns the exit status.
    pub fn kill_now(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        // SIGKILL by PID; an "already exited" race is fine.
        let _ = self.child.kill();
        let status = self.child.wait().ctx(|| format!("reaping {} (pid {})", self.name, self.pid))?;
        self.exited = Some(status);
        Ok(status)
    }

    /// Sends SIGTERM (`kill -TERM <pid>`) and waits up to `deadline` for the
    /// process to exit. On timeout it is killed with SIGKILL and an
    /// [`Error::NotReady`] naming the graceful-shutdown failure is returned.
    pub async fn terminate(&mut self, deadline: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        let kill = require_tool("kill")?;
        let out = Command::new(kill)
            .arg("-TERM")
            .arg(self.pid.to_string())
            .output()
            .ctx(|| format!("running `kill -TERM {}`", self.pid))?;
        if !out.status.success() && self.try_wait()?.is_none() {
            return Err(Error::CommandFailed {
                command: format!("kill -TERM {}", self.pid),
                status: out.status,
                output: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if start.elapsed() >= deadline {
                let _ = self.kill_now();
                return Err(Error::NotReady {
                    what: format!("graceful exit of {} (pid {}) after SIGTERM", self.name, self.pid),
                    deadline,
                    detail: "still running; killed with SIGKILL".to_string(),
                    log_tail: self.log_tail(4000),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            tracing::debug!(name = %self.name, pid = self.pid, "killed on drop");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(dir: &Path) -> ChildGuard {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("echo started; echo oops >&2; exec sleep 30");
        ChildGuard::spawn("sleeper", cmd, dir).unwrap()
    }

    fn alive(pid: u32) -> bool {
        // A zombie still has a /proc entry; a reaped process does not.
        Path::new(&format!("/proc/{pid}")).exists()
    }

    #[tokio::test]
    async fn drop_kills_and_reaps_by_pid() {
        let dir = tempfile::tempdir().unwrap();
        let g = sleeper(dir.path());
        let pid = g.pid();
        assert!(alive(pid));
        drop(g);
        assert!(!alive(pid), "pid {pid} survived drop");
    }

    #[tokio::test]
    async fn terminate_and_kill_report_signals_and_logs() {
        use std::os::unix::process::ExitStatusExt;
        let dir = tempfile::tempdir().unwrap();
        let mut g = sleeper(dir.path());
        // Wait (bounded) for the shell to print before exec'ing sleep.
        let start = Instant::now();
        while !g.log_tail(100).contains("started") && start.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let status = g.terminate(Duration::from_secs(5)).await.unwrap();
        assert_eq!(status.signal(), Some(15));
        let tail = g.log_tail(100);
        assert!(tail.contains("oops") && tail.contains("started"), "{tail}");
        let err = g.ensure_running().unwrap_err().to_string();
        assert!(err.contains("sleeper") && err.contains("oops"), "{err}");

        let mut g2 = sleeper(dir.path());
        assert_eq!(g2.kill_now().unwrap().signal(), Some(9));
        assert!(!g2.is_running());
    }
}
