//! Running a hook: an argument vector (a shell only when the config says so) in its own
//! process group, killed as a group on timeout, output kept as a bounded tail.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use gantry_core::Hook;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// Most bytes of output a [`HookOutcome`] keeps.
pub const MAX_TAIL_BYTES: usize = 64 * 1024;

/// How long output is still read after the hook exits: a hook that starts a daemon which
/// keeps the pipes open must not hang the deploy.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

/// How a hook ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookOutcome {
    /// It exited 0 within its timeout.
    pub success: bool,
    /// Its exit code; `None` when it was killed by a signal, timed out or did not start.
    pub exit_code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// It ran out of time and its process group was killed.
    pub timed_out: bool,
    /// The last lines of its stdout and stderr, in the order it wrote them; or why it
    /// could not start.
    pub tail: String,
    pub duration: Duration,
}

/// The timeout a hook runs with: its own, or `default`.
pub fn hook_timeout(hook: &Hook, default: Duration) -> Duration {
    hook.timeout_secs().map_or(default, Duration::from_secs)
}

/// Runs a hook in `cwd` with `env` added to its environment, and waits for it at most its
/// own timeout (or `default_timeout`).
///
/// An argument vector runs without a shell; a program path with a `/` that does not start
/// with `/` is taken relative to `cwd`, a bare name is looked up in `PATH`. A `shell` hook
/// runs as `/bin/sh -c`. The hook gets its own process group, killed as a whole on timeout
/// (and if this future is dropped). Its output is read as it comes and only the last
/// `tail_lines` lines (at most [`MAX_TAIL_BYTES`]) are kept, so a noisy hook neither blocks
/// on a full pipe nor fills memory. Variables named `GANTRY_*` in the agent's own
/// environment are not passed on; the hook gets those in `env`.
pub async fn run_hook(
    hook: &Hook,
    cwd: &Path,
    env: &[(String, String)],
    default_timeout: Duration,
    tail_lines: usize,
) -> HookOutcome {
    let started = Instant::now();
    let timeout = hook_timeout(hook, default_timeout);
    let not_started = |message: String| HookOutcome {
        success: false,
        exit_code: None,
        signal: None,
        timed_out: false,
        tail: message,
        duration: started.elapsed(),
    };

    let (mut command, program) = match hook {
        Hook::Shell { shell, .. } => {
            let mut command = Command::new("/bin/sh");
            command.arg("-c").arg(shell);
            (command, PathBuf::from("/bin/sh"))
        }
        Hook::Argv(argv) | Hook::Exec { argv, .. } => {
            let Some((program, args)) = argv.split_first() else {
                return not_started("cannot start the hook: its argument vector is empty".into());
            };
            let program = if program.contains('/') && !program.starts_with('/') {
                cwd.join(program)
            } else {
                PathBuf::from(program)
            };
            let mut command = Command::new(&program);
            command.args(args);
            (command, program)
        }
    };
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(|k| k.starts_with("GANTRY_")) {
            command.env_remove(key);
        }
    }
    // One pipe for stdout and stderr, as `2>&1` would: the tail keeps the hook's lines in
    // the order it wrote them (two pipes read side by side can deliver them out of order).
    let (reader, writer) = match std::io::pipe() {
        Ok(pipe) => pipe,
        Err(e) => return not_started(format!("cannot make a pipe for the hook's output: {e}")),
    };
    let writer_for_stderr = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => return not_started(format!("cannot make a pipe for the hook's output: {e}")),
    };
    command
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer_for_stderr)
        .process_group(0)
        .kill_on_drop(true);

    let spawned = command.spawn();
    // The command holds this process's copies of the pipe's write end: without dropping
    // them the output would never end.
    drop(command);
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            return not_started(format!(
                "cannot start {} in {}: {e}",
                program.display(),
                cwd.display()
            ))
        }
    };
    let mut group = GroupGuard(child.id().and_then(|id| i32::try_from(id).ok()));
    let mut output =
        match tokio::net::unix::pipe::Receiver::from_owned_fd(std::os::fd::OwnedFd::from(reader)) {
            Ok(output) => output,
            Err(e) => return not_started(format!("cannot read the hook's output: {e}")),
        };

    let mut tail = Tail::new(tail_lines);
    let mut buffer = vec![0u8; 16 * 1024];
    let mut open = true;
    let deadline = tokio::time::Instant::from_std(started + timeout);
    let mut drain_deadline = deadline;
    let mut status: Option<std::io::Result<ExitStatus>> = None;
    let mut timed_out = false;

    while open || status.is_none() {
        tokio::select! {
            read = output.read(&mut buffer), if open => match read {
                Ok(0) | Err(_) => open = false,
                Ok(n) => tail.push(&buffer[..n]),
            },
            exited = child.wait(), if status.is_none() => {
                // Reaped: the group id may be reused from now on, so no more killpg.
                group.disarm();
                status = Some(exited);
                drain_deadline = tokio::time::Instant::now() + DRAIN_AFTER_EXIT;
            },
            _ = tokio::time::sleep_until(deadline), if status.is_none() => {
                timed_out = true;
                group.kill();
                let _ = child.start_kill();
                status = Some(child.wait().await);
                group.disarm();
                drain_deadline = tokio::time::Instant::now() + DRAIN_AFTER_EXIT;
            },
            _ = tokio::time::sleep_until(drain_deadline), if status.is_some() => break,
        }
    }

    let (exit_code, signal, exited_ok, wait_error) = match status {
        Some(Ok(status)) => (status.code(), status.signal(), status.success(), None),
        Some(Err(e)) => (None, None, false, Some(e)),
        None => (None, None, false, None),
    };
    let mut text = tail.into_string();
    if let Some(e) = wait_error {
        text.push_str(&format!("\ncannot wait for {}: {e}", program.display()));
    }
    if timed_out {
        tracing::warn!(hook = %hook, ?timeout, "hook timed out; its process group was killed");
    }
    HookOutcome {
        success: exited_ok && !timed_out,
        exit_code: if timed_out { None } else { exit_code },
        signal,
        timed_out,
        tail: text,
        duration: started.elapsed(),
    }
}

/// Kills a hook's process group when dropped while armed: on timeout, and when the
/// `run_hook` future is dropped before the hook ends.
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn kill(&self) {
        if let Some(pgid) = self.0.filter(|&p| p > 1) {
            // SAFETY: killpg takes plain integers and has no memory effects.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The end of a stream of output: the last `lines` lines, at most [`MAX_TAIL_BYTES`].
struct Tail {
    lines: usize,
    buf: Vec<u8>,
    cut: bool,
}

impl Tail {
    fn new(lines: usize) -> Tail {
        Tail {
            lines,
            buf: Vec::new(),
            cut: false,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        if bytes.len() >= MAX_TAIL_BYTES {
            self.buf.clear();
            self.buf
                .extend_from_slice(&bytes[bytes.len() - MAX_TAIL_BYTES..]);
            self.cut = true;
            return;
        }
        self.buf.extend_from_slice(bytes);
        // Trim only now and then, so that each byte is moved a bounded number of times.
        if self.buf.len() > 2 * MAX_TAIL_BYTES {
            let excess = self.buf.len() - MAX_TAIL_BYTES;
            self.buf.drain(..excess);
            self.cut = true;
        }
    }

    fn into_string(self) -> String {
        let mut bytes: &[u8] = &self.buf;
        let mut cut = self.cut;
        if bytes.len() > MAX_TAIL_BYTES {
            bytes = &bytes[bytes.len() - MAX_TAIL_BYTES..];
            cut = true;
        }
        // The last `lines` lines; a final newline does not start another line.
        let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        let mut start = 0;
        let mut seen = 0;
        for (i, b) in body.iter().enumerate().rev() {
            if *b == b'\n' {
                seen += 1;
                if seen == self.lines {
                    start = i + 1;
                    cut = true;
                    break;
                }
            }
        }
        if self.lines == 0 {
            return String::new();
        }
        let text = String::from_utf8_lossy(&body[start..]);
        if cut && start == 0 {
            // The byte cap cut a line in two.
            format!("…{text}")
        } else {
            text.into_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail_of(chunks: &[&[u8]], lines: usize) -> String {
        let mut tail = Tail::new(lines);
        for chunk in chunks {
            tail.push(chunk);
        }
        tail.into_string()
    }

    #[test]
    fn tails() {
        // (chunks, lines, expected)
        let cases: [(&[&[u8]], usize, &str); 7] = [
            (&[b"a\nb\nc\n"], 2, "b\nc"),
            (&[b"a\nb\nc"], 2, "b\nc"),
            (&[b"a\n", b"b\n", b"c\n"], 5, "a\nb\nc"),
            (&[b"a", b"b\nc", b"d\n"], 1, "cd"),
            (&[b""], 3, ""),
            (&[b"a\nb\n"], 0, ""),
            (&[b"\xffx\n"], 1, "\u{fffd}x"),
        ];
        for (chunks, lines, want) in cases {
            assert_eq!(tail_of(chunks, lines), want, "{chunks:?} {lines}");
        }
    }

    #[test]
    fn tail_is_bounded() {
        let mut tail = Tail::new(1_000_000);
        let line = b"0123456789abcdef\n";
        for _ in 0..100_000 {
            tail.push(line);
            assert!(tail.buf.len() <= 2 * MAX_TAIL_BYTES + line.len());
        }
        let text = tail.into_string();
        assert!(text.len() <= MAX_TAIL_BYTES + 3, "{}", text.len());
        assert!(text.starts_with('…'));
        assert!(text.ends_with("0123456789abcdef"));

        let big = vec![b'x'; 3 * MAX_TAIL_BYTES];
        assert_eq!(tail_of(&[&big], 10).len(), MAX_TAIL_BYTES + '…'.len_utf8());
    }
}
