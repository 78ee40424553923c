//! Running a child process to completion from async code and describing its failure.

use std::process::{Command, Output, Stdio};

use tokio::io::AsyncWriteExt;

use super::ScratchError;

/// Runs `cmd`, feeding `stdin` if given, and collects its output. Only failing to start it is an
/// error here; the caller judges the exit status.
pub(crate) async fn output(cmd: Command, stdin: Option<&str>) -> Result<Output, ScratchError> {
    let program: std::path::PathBuf = cmd.get_program().into();
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| ScratchError::Spawn {
        program: program.clone(),
        source,
    })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // Write concurrently with reading: a large script could otherwise fill both pipes.
        let text = text.to_owned();
        tokio::spawn(async move {
            let _ = pipe.write_all(text.as_bytes()).await;
        });
    }
    child
        .wait_with_output()
        .await
        .map_err(|source| ScratchError::Spawn { program, source })
}

/// Runs `cmd` and turns a non-zero exit into `ToolFailed` with its combined output.
pub(crate) async fn checked(cmd: Command, step: &str, fix: &str) -> Result<Output, ScratchError> {
    let out = output(cmd, None).await?;
    if out.status.success() {
        return Ok(out);
    }
    Err(ScratchError::ToolFailed {
        step: step.into(),
        status: out.status.to_string(),
        output: combined(&out),
        fix: fix.into(),
    })
}

/// stderr then stdout, trimmed, for error messages.
pub(crate) fn combined(out: &Output) -> String {
    let mut text = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.trim().is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(stdout.trim());
    }
    text
}
