//! Running short-lived external commands (skopeo, umoci, ctr) asynchronously
//! with a deadline, so in-process servers on the same tokio runtime keep
//! serving while the command runs. Output is captured for error messages.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::error::{Error, IoContext, Result};
use crate::process::PROXY_VARS;
use crate::tools::tail;

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
}

/// Renders a command line for messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let std = cmd.as_std();
    let mut s = std.get_program().to_string_lossy().into_owned();
    for arg in std.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion within `deadline`. A non-zero exit is an
/// [`Error::CommandFailed`] carrying the output tail; a timeout kills the
/// command (kill-on-drop) and returns [`Error::CommandTimeout`].
pub async fn run(mut cmd: Command, deadline: Duration) -> Result<CommandOutput> {
    let line = describe(&cmd);
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let child = cmd.spawn().ctx(|| format!("spawning `{line}`"))?;
    let output = match tokio::time::timeout(deadline, child.wait_with_output()).await {
        Ok(res) => res.ctx(|| format!("waiting for `{line}`"))?,
        Err(_) => {
            return Err(Error::CommandTimeout { command: line, deadline, output: String::new() });
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        return Err(Error::CommandFailed {
            command: line,
            status: output.status,
            output: format!("--- stderr ---\n{}\n--- stdout ---\n{}", tail(&stderr, 4000), tail(&stdout, 2000)),
        });
    }
    Ok(CommandOutput { stdout, stderr })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failure_carries_stderr_and_timeout_kills() {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("echo to-out; echo bad-thing >&2; exit 3");
        let err = run(cmd, Duration::from_secs(5)).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("bad-thing") && msg.contains("exit status: 3"), "{msg}");

        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let start = tokio::time::Instant::now();
        let err = run(cmd, Duration::from_millis(200)).await.unwrap_err();
        assert!(matches!(err, Error::CommandTimeout { .. }), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5));

        let mut cmd = Command::new("echo");
        cmd.arg("hi");
        assert_eq!(run(cmd, Duration::from_secs(5)).await.unwrap().stdout, "hi\n");
    }
}
