//! The cluster is stopped and deleted however the test process ends: an atexit hook after
//! the harness finishes, a reaper process for SIGKILL and Ctrl-C, and a guard for a start-up
//! that fails half-way.

use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Once;

use pgshroud::cli::throwaway_pg::Instance;

use super::CLUSTER;

/// Stops and deletes a half-started cluster when start-up fails, by error or by panic (e.g. in
/// certificate generation), unless disarmed once start-up succeeded.
pub(super) struct CleanupOnDrop<'a> {
    instance: &'a Instance,
    armed: bool,
}

impl<'a> CleanupOnDrop<'a> {
    pub(super) fn arm(instance: &'a Instance) -> CleanupOnDrop<'a> {
        CleanupOnDrop {
            instance,
            armed: true,
        }
    }

    pub(super) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for CleanupOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.instance.stop_and_remove();
        }
    }
}

/// A `sh` child that waits for its stdin to close, which happens when the test process ends
/// in any way, including SIGKILL or Ctrl-C where the atexit hook never runs; it then kills the
/// postmaster and deletes the directory. After a normal exit it finds nothing left to do.
/// It runs in its own process group and ignores terminal signals, so Ctrl-C does not take it
/// down with the tests (pg_ctl already detaches the postmaster the same way).
pub(super) struct Reaper {
    child: Child,
    stdin: ChildStdin,
}

const REAPER_SCRIPT: &str = r#"
trap '' INT HUP TERM QUIT
cat >/dev/null 2>&1
pidfile="$1/postmaster.pid"
if [ -f "$pidfile" ]; then
    kill -QUIT "$(head -n 1 "$pidfile")" 2>/dev/null
    i=0
    while [ -f "$pidfile" ] && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
fi
rm -rf "$2"
"#;

impl Reaper {
    pub(super) fn spawn(instance: &Instance) -> std::io::Result<Reaper> {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(REAPER_SCRIPT)
            .arg("pgshroud-pg-reaper")
            .arg(instance.data_dir())
            .arg(instance.root())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        match child.stdin.take() {
            Some(stdin) => Ok(Reaper { child, stdin }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(std::io::Error::other("the reaper has no stdin pipe"))
            }
        }
    }

    /// Keeps only the pipe: the reaper outlives this process and is reaped by init.
    pub(super) fn into_pipe(self) -> ChildStdin {
        self.stdin
    }

    /// Lets the reaper run now (after the caller cleaned up) and waits for it.
    pub(super) fn dismiss(self) {
        let Reaper { mut child, stdin } = self;
        drop(stdin);
        let _ = child.wait();
    }
}

/// Registers, once per process, the hook that stops and deletes the cluster at exit. The test
/// harness ends with `std::process::exit` (or by returning from main) after all tests, failed
/// or not, and both run atexit handlers.
pub(super) fn register_exit_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        // SAFETY: `atexit` only stores the function pointer. `stop_at_exit` takes no
        // arguments, touches only a static, and cannot unwind into C (it catches panics).
        let rc = unsafe { libc::atexit(stop_at_exit) };
        if rc != 0 {
            eprintln!("warning: atexit failed; the test cluster is left to its reaper process");
        }
    });
}

extern "C" fn stop_at_exit() {
    let _ = std::panic::catch_unwind(|| {
        if let Some(Ok(cluster)) = CLUSTER.get() {
            cluster.instance.stop_and_remove();
        }
    });
}
