//! The control socket of `run` (docs/control.md): a Unix stream socket that any number of
//! read-only clients (`ntlm-affinity top`) connect to. Each gets NDJSON lines: a `hello`, the
//! latest alerts the daemon kept, then every alert as it is written and a `live` snapshot
//! every second. Clients send nothing; what they write is never read.
//!
//! The daemon never waits for a client: each has a bounded queue, filled with `try_send`, and
//! a client whose queue is full is dropped (counted) — it reconnects and starts again from
//! the hello. Who may connect is the socket file's mode (0660, owner root, the group of
//! `--control-group`): the kernel refuses anyone else at `connect`.

use std::{
    collections::VecDeque,
    ffi::CString,
    os::unix::{fs::PermissionsExt as _, net::UnixListener as StdListener},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, bail};
use tokio::{io::AsyncWriteExt as _, sync::mpsc};

/// Where `run` listens unless told otherwise.
pub const DEFAULT_PATH: &str = "/run/ntlm-affinity/control.sock";
/// Lines waiting for one client at most: about 20 s of snapshots with a burst of alerts.
const CLIENT_QUEUE: usize = 4096;
/// Clients at most; more are told so and closed.
pub const MAX_CLIENTS: usize = 32;
/// Alerts kept for a client that connects later.
const RECENT: usize = 200;
/// A client that takes no bytes for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

type Line = Arc<[u8]>;

/// The clients, shared by the event loop (snapshots, accepting) and the output thread
/// (alerts).
#[derive(Default)]
pub struct Hub {
    clients: Mutex<Vec<mpsc::Sender<Line>>>,
    count: AtomicUsize,
    recent: Mutex<VecDeque<Line>>,
    /// Clients dropped because they did not keep up.
    pub dropped: AtomicU64,
    /// Clients served since the start.
    pub served: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hub {
    /// Clients connected now.
    pub fn clients(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Sends `line` to every client; drops those that do not keep up.
    pub fn broadcast(&self, line: &[u8]) {
        if self.clients() == 0 {
            return;
        }
        self.send(Line::from(line));
    }

    /// An alert: sent, and kept for clients that connect later.
    pub fn alert(&self, line: &[u8]) {
        let line = Line::from(line);
        {
            let mut r = lock(&self.recent);
            if r.len() == RECENT {
                r.pop_front();
            }
            r.push_back(Arc::clone(&line));
        }
        if self.clients() > 0 {
            self.send(line);
        }
    }

    fn send(&self, line: Line) {
        let mut clients = lock(&self.clients);
        clients.retain(|c| match c.try_send(Arc::clone(&line)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        self.count.store(clients.len(), Ordering::Relaxed);
    }

    /// A new client's queue, primed with `hello` and the recent alerts; `None` when full.
    fn join(&self, hello: &[u8]) -> Option<mpsc::Receiver<Line>> {
        let mut clients = lock(&self.clients);
        clients.retain(|c| !c.is_closed());
        if clients.len() >= MAX_CLIENTS {
            return None;
        }
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let _ = tx.try_send(Line::from(hello));
        for l in lock(&self.recent).iter() {
            let _ = tx.try_send(Arc::clone(l));
        }
        clients.push(tx);
        self.count.store(clients.len(), Ordering::Relaxed);
        self.served.fetch_add(1, Ordering::Relaxed);
        Some(rx)
    }
}

/// The bound socket; removes its file when dropped.
pub struct Socket {
    listener: Option<StdListener>,
    path: PathBuf,
}

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Socket {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The group id of `name`, or an error naming it.
fn group_id(name: &str) -> anyhow::Result<libc::gid_t> {
    let c = CString::new(name).context("a group name without NUL bytes")?;
    // SAFETY: getgrnam returns a pointer into static storage or null; read at once.
    let g = unsafe { libc::getgrnam(c.as_ptr()) };
    if g.is_null() {
        bail!("--control-group {name}: no such group (see /etc/group)");
    }
    Ok(unsafe { (*g).gr_gid })
}

/// Binds the control socket at `path` (its directory made if missing), mode 0660, group
/// `group` if given. A live socket at `path` is another daemon's: an error; a stale one (no
/// listener) is replaced. Call before dropping capabilities (`chown` to a group needs
/// `CAP_CHOWN`).
pub fn bind(path: &Path, group: Option<&str>) -> anyhow::Result<Socket> {
    let gid = group.map(group_id).transpose()?;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating {} for the control socket", dir.display()))?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "{}: another ntlm-affinity is serving its control socket there; stop it, or give this one another --control PATH",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    let listener = StdListener::bind(path)
        .with_context(|| format!("binding the control socket {}", path.display()))?;
    let socket = Socket {
        listener: Some(listener),
        path: path.to_path_buf(),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid))
            .with_context(|| format!("giving {} to group {gid}", path.display()))?;
    }
    Ok(socket)
}

/// Accepts clients until the runtime stops, each served by a task of its own.
pub async fn serve(mut socket: Socket, hub: Arc<Hub>, hello: Vec<u8>) -> anyhow::Result<()> {
    let std = socket
        .listener
        .take()
        .context("the control socket is served once")?;
    std.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(std)?;
    // Keep the file until the loop ends (the runtime drops this future at exit).
    let _socket = socket;
    loop {
        let mut stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(mut rx) = hub.join(&hello) else {
            tokio::spawn(async move {
                let msg = format!(
                    "{{\"error\":\"the daemon serves {MAX_CLIENTS} control clients at most\"}}\n"
                );
                let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(msg.as_bytes())).await;
            });
            continue;
        };
        tokio::spawn(async move {
            while let Some(line) = rx.recv().await {
                match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&line)).await {
                    Ok(Ok(())) => {}
                    _ => break,
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_client_that_does_not_read_is_dropped_and_counted() {
        let hub = Hub::default();
        let mut rx = hub.join(b"hello\n").unwrap();
        assert_eq!(hub.clients(), 1);
        for _ in 0..CLIENT_QUEUE + 10 {
            hub.broadcast(b"x\n");
        }
        assert_eq!(hub.clients(), 0);
        assert_eq!(hub.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(&rx.try_recv().unwrap()[..], b"hello\n");
    }

    #[test]
    fn a_late_client_gets_the_recent_alerts_after_the_hello() {
        let hub = Hub::default();
        for i in 0..RECENT + 5 {
            hub.alert(format!("{i}\n").as_bytes());
        }
        let mut rx = hub.join(b"hello\n").unwrap();
        assert_eq!(&rx.try_recv().unwrap()[..], b"hello\n");
        assert_eq!(&rx.try_recv().unwrap()[..], b"5\n", "the oldest kept");
        let mut n = 1;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, RECENT);
    }

    #[test]
    fn clients_beyond_the_bound_are_refused() {
        let hub = Hub::default();
        let keep: Vec<_> = (0..MAX_CLIENTS)
            .map(|_| hub.join(b"h\n").unwrap())
            .collect();
        assert!(hub.join(b"h\n").is_none());
        drop(keep);
        assert!(hub.join(b"h\n").is_some(), "closed clients make room");
    }

    #[test]
    fn a_live_socket_is_not_taken_over_and_a_stale_one_is_replaced() {
        let dir = std::env::temp_dir().join(format!("nta-control-{}", std::process::id()));
        let path = dir.join("sub/control.sock");
        let first = bind(&path, None).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let err = bind(&path, None).err().unwrap().to_string();
        assert!(err.contains("another ntlm-affinity"), "{err}");
        drop(first);
        assert!(!path.exists(), "removed at exit");
        // A file left by a killed daemon: nobody listens there, so it is replaced.
        drop(StdListener::bind(&path).unwrap());
        assert!(path.exists());
        drop(bind(&path, None).unwrap());
        let err = bind(&path, Some("no-such-group-nta")).err().unwrap();
        assert!(err.to_string().contains("no such group"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
