//! Snapshots written by a forked child process.
//!
//! The child gets a copy-on-write image of the tree exactly as it stood when it was forked
//! (the caller holds the tree's lock across the fork), writes it out while the server goes on
//! serving, and exits. The server neither stalls for the whole write nor keeps a second tree:
//! the only extra memory is the pages the server changes while the child runs.
//!
//! After `fork` only the forking thread exists in the child, so it does nothing but write the
//! file: no logging, no locks that other threads may have held, no destructors (it leaves with
//! `_exit`). It closes every inherited descriptor first, so that sockets the server closes are
//! not held open by it, and it dies with the server (`PR_SET_PDEATHSIG`), so a killed server
//! leaves no writer behind to race a restarted one.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferrozk_storage::snap;
use ferrozk_tree::DataTree;

/// A child process writing one snapshot.
pub struct SnapshotChild {
    pid: libc::pid_t,
    /// Read end of a pipe the child writes its error message to (nothing on success).
    messages: File,
    path: PathBuf,
}

impl SnapshotChild {
    /// Forks a child that writes `header` and then `tree` as the snapshot `index` in `dir`.
    /// The caller must hold the lock that guards `tree` against changes.
    pub fn spawn(tree: &DataTree, header: &[u8], dir: &Path, index: u64) -> io::Result<SnapshotChild> {
        let path = dir.join(format!("snapshot.{index:020}"));
        let mut fds = [0; 2];
        // SAFETY: plain syscalls; the child below runs only code that is safe after fork.
        unsafe {
            if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
                return Err(io::Error::last_os_error());
            }
            let server = libc::getpid();
            match libc::fork() {
                -1 => {
                    let e = io::Error::last_os_error();
                    libc::close(fds[0]);
                    libc::close(fds[1]);
                    Err(e)
                }
                0 => {
                    libc::close(fds[0]);
                    run_child(server, fds[1], tree, header, dir, index)
                }
                pid => {
                    libc::close(fds[1]);
                    Ok(SnapshotChild { pid, messages: File::from_raw_fd(fds[0]), path })
                }
            }
        }
    }

    /// Waits for the child (blocking) and returns the snapshot's path once it is durable.
    pub fn wait(mut self) -> Result<PathBuf, String> {
        let mut message = String::new();
        let _ = self.messages.read_to_string(&mut message);
        let mut status = 0;
        loop {
            // SAFETY: waits for our own child.
            let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if r == self.pid {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(format!("waiting for the snapshot writer: {e}"));
            }
        }
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            Ok(self.path)
        } else if !message.is_empty() {
            Err(message)
        } else if libc::WIFSIGNALED(status) {
            Err(format!("the snapshot writer was killed by signal {}", libc::WTERMSIG(status)))
        } else {
            Err(format!("the snapshot writer failed (exit status {})", libc::WEXITSTATUS(status)))
        }
    }
}

/// The child's whole life: write the snapshot, report, exit.
unsafe fn run_child(server: libc::pid_t, report: libc::c_int, tree: &DataTree, header: &[u8], dir: &Path, index: u64) -> ! {
    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    if libc::getppid() != server {
        // The server died before the line above took effect.
        libc::_exit(2);
    }
    close_inherited(report);
    // Yield the cores to the server's requests.
    libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    let written = snap::write(dir, index, |w| {
        let mut w = Paced { inner: w, started: Instant::now(), written: 0 };
        w.write_all(&(header.len() as u32).to_be_bytes())?;
        w.write_all(header)?;
        tree.write_snapshot(&mut w)
    });
    match written {
        Ok(_) => libc::_exit(0),
        Err(e) => {
            let msg = format!("cannot write a snapshot in {}: {e}", dir.display());
            libc::write(report, msg.as_ptr().cast(), msg.len());
            libc::_exit(1)
        }
    }
}

/// Closes every descriptor above stderr except `keep`.
unsafe fn close_inherited(keep: libc::c_int) {
    let keep = keep as libc::c_uint;
    let ranges = [(3, keep.saturating_sub(1)), (keep + 1, libc::c_uint::MAX)];
    for (first, last) in ranges {
        if first > last {
            continue;
        }
        if libc::syscall(libc::SYS_close_range, first, last, 0) != 0 {
            // Kernels before 5.9: one by one, up to the descriptor limit.
            let max = libc::sysconf(libc::_SC_OPEN_MAX).clamp(1024, 1 << 20) as libc::c_uint;
            for fd in first..=last.min(max) {
                libc::close(fd as libc::c_int);
            }
        }
    }
}

/// Bytes per second a snapshot is written at, at most. Unpaced, the child wrote a 220 MB
/// snapshot in under a second, and the log's fsyncs queued behind it on the disk (p99 write
/// latency 5x that without a snapshot); paced, a 1M-znode snapshot takes a few seconds.
const SNAPSHOT_BYTES_PER_SEC: u64 = 64 << 20;

/// Sleeps whenever the writing runs ahead of [`SNAPSHOT_BYTES_PER_SEC`].
struct Paced<'a> {
    inner: &'a mut dyn Write,
    started: Instant,
    written: u64,
}

impl Write for Paced<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        let due = Duration::from_secs_f64(self.written as f64 / SNAPSHOT_BYTES_PER_SEC as f64);
        if let Some(ahead) = due.checked_sub(self.started.elapsed()) {
            if ahead > Duration::from_millis(5) {
                std::thread::sleep(ahead);
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
