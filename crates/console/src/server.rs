//! The launcher's side of the console: the relay between the guest's serial stream and
//! `console.sock`, with the backlog and the one-client-at-a-time rule.
//!
//! How the launcher wires it, so the guest's first byte lands in the backlog: QEMU gets
//! `-chardev socket,id=serial0,path=<state>/serial.sock,server=on,wait=off -serial
//! chardev:serial0` and `-S`; once QMP answers, the launcher calls [`connect_chardev`],
//! then [`ConsoleServer::start`] on `<state>/console.sock`, and only then sends `cont`
//! (with `wait=off` QEMU drops serial output while nothing is connected). One server per
//! QEMU process: its stream ends when QEMU exits, after which clients still get the
//! backlog (why the guest died) and are hung up on; `stop()` at teardown.
//!
//! Threads, no async: one pumps guest output into the backlog and to the client, one
//! accepts clients, and one per client carries its typing to the guest. Lock order where
//! two are held: `guest_in`, then `state`.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use std::{fs, thread};

use crate::ring::Ring;
use crate::{Error, DEFAULT_BACKLOG, MAX_SOCKET_PATH, TAKEOVER_MESSAGE};

/// How the server behaves; [`Options::default`] is what the launcher uses.
#[derive(Debug, Clone)]
pub struct Options {
    /// Bytes of guest output kept for a client that attaches later.
    pub backlog: usize,
    /// How long a write to a client may block before that client is dropped, so a client
    /// that stops reading cannot stall the guest's serial port.
    pub client_write_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            backlog: DEFAULT_BACKLOG,
            client_write_timeout: Duration::from_secs(5),
        }
    }
}

/// A running console relay. [`ConsoleServer::stop`] (or drop) closes the socket, joins its
/// threads and removes the socket file.
#[derive(Debug)]
pub struct ConsoleServer {
    path: PathBuf,
    /// The socket file we bound, so stop removes ours and never a successor's.
    inode: (u64, u64),
    shared: Arc<Shared>,
    listener: UnixListener,
    guest: UnixStream,
    acceptor: Option<JoinHandle<()>>,
    pump: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    opts: Options,
    stopping: AtomicBool,
    guest_in: Mutex<UnixStream>,
    state: Mutex<State>,
    inputs: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Debug)]
struct State {
    backlog: Ring,
    client: Option<Client>,
    next_id: u64,
    /// False once the guest's stream ended (QEMU exited): clients then get the backlog
    /// and are hung up on.
    guest_open: bool,
}

#[derive(Debug)]
struct Client {
    id: u64,
    stream: UnixStream,
}

/// The relay's threads hold a read buffer on the heap and little else: small stacks keep
/// the launcher's footprint down.
const STACK: usize = 128 * 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking relay thread leaves plain bytes behind, which stay usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ConsoleServer {
    /// Starts relaying `guest` (the connected serial stream) on a new socket at
    /// `sock_path`, with the default [`Options`].
    pub fn start(sock_path: impl AsRef<Path>, guest: UnixStream) -> Result<Self, Error> {
        Self::start_with(sock_path, guest, Options::default())
    }

    pub fn start_with(
        sock_path: impl AsRef<Path>,
        guest: UnixStream,
        opts: Options,
    ) -> Result<Self, Error> {
        let path = sock_path.as_ref().to_path_buf();
        let listener = bind_private(&path)?;
        let meta = fs::symlink_metadata(&path).map_err(|source| Error::Inspect {
            path: path.clone(),
            source,
        })?;
        let inode = (meta.dev(), meta.ino());

        let cleanup = |e: Error| {
            let _ = fs::remove_file(&path);
            e
        };
        let guest_in = guest.try_clone().map_err(|e| cleanup(Error::Guest(e)))?;
        let guest_out = guest.try_clone().map_err(|e| cleanup(Error::Guest(e)))?;
        let accept_on = listener.try_clone().map_err(|source| {
            cleanup(Error::Bind {
                path: path.clone(),
                source,
            })
        })?;
        let shared = Arc::new(Shared {
            stopping: AtomicBool::new(false),
            guest_in: Mutex::new(guest_in),
            state: Mutex::new(State {
                backlog: Ring::new(opts.backlog),
                client: None,
                next_id: 0,
                guest_open: true,
            }),
            inputs: Mutex::new(Vec::new()),
            opts,
        });

        let s = Arc::clone(&shared);
        let pump = thread::Builder::new()
            .name("console-pump".into())
            .stack_size(STACK)
            .spawn(move || pump(&s, guest_out))
            .map_err(|source| {
                cleanup(Error::Spawn {
                    what: "guest output",
                    source,
                })
            })?;
        let mut server = Self {
            path,
            inode,
            shared: Arc::clone(&shared),
            listener,
            guest,
            acceptor: None,
            pump: Some(pump),
        };
        let acceptor = thread::Builder::new()
            .name("console-accept".into())
            .stack_size(STACK)
            .spawn(move || accept_loop(&shared, accept_on))
            .map_err(|source| Error::Spawn {
                what: "accept",
                source,
            });
        match acceptor {
            Ok(handle) => server.acceptor = Some(handle),
            Err(e) => {
                server.stop();
                return Err(e);
            }
        }
        Ok(server)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops relaying: no new clients, the client (if any) and the guest stream are hung
    /// up on, every thread is joined, and the socket file is removed. Idempotent.
    pub fn stop(&mut self) {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        // SAFETY: the fd belongs to `self.listener`, open until self drops; shutting a
        // listening socket down makes a blocked accept return on Linux.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        // And in case it did not: a connection wakes accept, which then sees `stopping`.
        let _ = UnixStream::connect(&self.path);
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        let _ = self.guest.shutdown(std::net::Shutdown::Both);
        if let Some(h) = self.pump.take() {
            let _ = h.join();
        }
        // The pump hung up on the client at the guest's end; its input thread ends with it.
        let inputs = std::mem::take(&mut *lock(&self.shared.inputs));
        for h in inputs {
            let _ = h.join();
        }
        if let Ok(meta) = fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.inode {
                let _ = fs::remove_file(&self.path);
            }
        }
    }
}

impl Drop for ConsoleServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Binds `path` as a fresh socket with mode 0600, replacing a stale socket file and
/// refusing a live one.
fn bind_private(path: &Path) -> Result<UnixListener, Error> {
    let len = path.as_os_str().as_bytes().len();
    if len > MAX_SOCKET_PATH {
        return Err(Error::PathTooLong {
            path: path.to_path_buf(),
            len,
        });
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(Error::NotASocket {
                path: path.to_path_buf(),
            })
        }
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => {
                return Err(Error::InUse {
                    path: path.to_path_buf(),
                })
            }
            // Nobody listens: left behind by a server that died.
            Err(_) => match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(Error::RemoveStale {
                        path: path.to_path_buf(),
                        source,
                    })
                }
            },
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Inspect {
                path: path.to_path_buf(),
                source,
            })
        }
    }
    let listener = UnixListener::bind(path).map_err(|source| {
        if source.kind() == io::ErrorKind::AddrInUse {
            Error::InUse {
                path: path.to_path_buf(),
            }
        } else {
            Error::Bind {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    // Before the first accept, so no client is served through a wider mode; the state
    // dir's own mode closes the short window between bind and chmod.
    if let Err(source) = fs::set_permissions(path, fs::Permissions::from_mode(0o600)) {
        let _ = fs::remove_file(path);
        return Err(Error::Chmod {
            path: path.to_path_buf(),
            source,
        });
    }
    Ok(listener)
}

/// Guest output → backlog and the attached client.
fn pump(shared: &Shared, mut guest: UnixStream) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match guest.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let mut st = lock(&shared.state);
        st.backlog.push(&buf[..n]);
        if let Some(c) = &mut st.client {
            if c.stream.write_all(&buf[..n]).is_err() {
                // Gone or not reading: drop it rather than stall the guest.
                let _ = c.stream.shutdown(std::net::Shutdown::Both);
                st.client = None;
            }
        }
    }
    let mut st = lock(&shared.state);
    st.guest_open = false;
    if let Some(c) = st.client.take() {
        let _ = c.stream.shutdown(std::net::Shutdown::Both);
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: UnixListener) {
    loop {
        let conn = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        match conn {
            Ok((stream, _)) => attach(shared, stream),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Out of fds and the like: this connection is lost, the next may work. A
            // short pause keeps a persistent failure from spinning a core.
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Makes `stream` the client: the previous one is told and hung up on, the new one gets
/// the backlog, then live output.
fn attach(shared: &Arc<Shared>, mut stream: UnixStream) {
    let _ = stream.set_write_timeout(Some(shared.opts.client_write_timeout));
    let Ok(input) = stream.try_clone() else {
        // Without a second handle it could not type: refuse it before it displaces anyone.
        let _ = stream.shutdown(std::net::Shutdown::Both);
        return;
    };
    let _guest_in = lock(&shared.guest_in);
    let mut st = lock(&shared.state);
    if let Some(mut old) = st.client.take() {
        let _ = old.stream.write_all(TAKEOVER_MESSAGE.as_bytes());
        let _ = old.stream.shutdown(std::net::Shutdown::Both);
    }
    let (a, b) = st.backlog.as_slices();
    if stream
        .write_all(a)
        .and_then(|()| stream.write_all(b))
        .is_err()
    {
        let _ = stream.shutdown(std::net::Shutdown::Both);
        return;
    }
    if !st.guest_open {
        let _ = stream.shutdown(std::net::Shutdown::Both);
        return;
    }
    let id = st.next_id;
    st.next_id += 1;
    st.client = Some(Client { id, stream });
    drop(st);

    let s = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name("console-input".into())
        .stack_size(STACK)
        .spawn(move || forward_input(&s, id, input));
    let mut inputs = lock(&shared.inputs);
    inputs.retain(|h| !h.is_finished());
    match spawned {
        Ok(h) => inputs.push(h),
        Err(_) => {
            // Without its input thread the client could only watch: hang up instead.
            drop(inputs);
            let mut st = lock(&shared.state);
            if st.client.as_ref().is_some_and(|c| c.id == id) {
                if let Some(c) = st.client.take() {
                    let _ = c.stream.shutdown(std::net::Shutdown::Both);
                }
            }
        }
    }
}

/// Client typing → guest, while this client is the attached one.
fn forward_input(shared: &Shared, id: u64, mut from: UnixStream) {
    let mut buf = [0u8; 4096];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let mut guest = lock(&shared.guest_in);
        let current = lock(&shared.state).client.as_ref().map(|c| c.id) == Some(id);
        if !current || guest.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    // The client hung up (or was replaced): forget it if it is still the attached one.
    let mut st = lock(&shared.state);
    if st.client.as_ref().is_some_and(|c| c.id == id) {
        if let Some(c) = st.client.take() {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Connects to QEMU's serial chardev socket (`-chardev socket,path=…,server=on`), waiting
/// up to `timeout` for QEMU to create it.
pub fn connect_chardev(path: &Path, timeout: Duration) -> Result<UnixStream, Error> {
    let deadline = Instant::now() + timeout;
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return Ok(s),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) && Instant::now() < deadline =>
            {
                thread::sleep(Duration::from_millis(5));
            }
            Err(source) => {
                return Err(Error::Connect {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
}
