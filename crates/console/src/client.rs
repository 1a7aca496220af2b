//! The CLI's side of the console (`virtctl console`): copy a console stream to the
//! terminal and the user's typing to the stream, until `^]` or a hang-up.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use crate::term::RawMode;
use crate::{Error, DISCONNECTED_MESSAGE, ESCAPE, TAKEOVER_MESSAGE};

/// What virtctl prints once connected (pkg/virtctl/console in KubeVirt).
pub fn connected_message(vm: &str) -> String {
    format!("Successfully connected to {vm} console. The escape sequence is ^]")
}

/// Ends a blocked read on the other half of a split stream (the read returns 0 or fails).
pub struct Waker(Box<dyn Fn() + Send + Sync>);

impl Waker {
    pub fn new(wake: impl Fn() + Send + Sync + 'static) -> Self {
        Self(Box::new(wake))
    }

    pub fn wake(&self) {
        (self.0)();
    }
}

impl std::fmt::Debug for Waker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Waker")
    }
}

/// A connection to a console: the unix socket today, a websocket later.
pub trait Transport: Send + 'static {
    type Reader: Read + Send + 'static;
    type Writer: Write + Send + 'static;
    /// The two directions, and a waker that ends a read blocked on the reader.
    fn split(self) -> io::Result<(Self::Reader, Self::Writer, Waker)>;
}

impl Transport for UnixStream {
    type Reader = UnixStream;
    type Writer = UnixStream;
    fn split(self) -> io::Result<(UnixStream, UnixStream, Waker)> {
        let writer = self.try_clone()?;
        let waker = self.try_clone()?;
        Ok((
            self,
            writer,
            Waker::new(move || {
                let _ = waker.shutdown(std::net::Shutdown::Both);
            }),
        ))
    }
}

/// Where the user's typing comes from; the session wakes a blocked read when the server
/// hangs up, so no reader is left behind to steal the next keystroke.
pub trait Input: Read + Send + 'static {
    fn waker(&self) -> io::Result<Waker>;
}

impl Input for UnixStream {
    fn waker(&self) -> io::Result<Waker> {
        let s = self.try_clone()?;
        Ok(Waker::new(move || {
            let _ = s.shutdown(std::net::Shutdown::Read);
        }))
    }
}

/// The process's stdin, readable in a way the session can interrupt (a wake pipe polled
/// beside fd 0).
#[derive(Debug)]
pub struct Stdin {
    wake_rx: Arc<OwnedFd>,
    wake_tx: Arc<OwnedFd>,
}

impl Stdin {
    pub fn new() -> io::Result<Self> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two fds into the array it is given.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both fds were just created and are owned by nobody else.
        let (rx, tx) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Self {
            wake_rx: Arc::new(rx),
            wake_tx: Arc::new(tx),
        })
    }
}

impl Read for Stdin {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: libc::STDIN_FILENO,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.wake_rx.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: poll reads and writes the two pollfds it is given.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if fds[1].revents != 0 {
                return Ok(0);
            }
            if fds[0].revents != 0 {
                // SAFETY: reads at most buf.len() bytes into buf.
                let n =
                    unsafe { libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(e);
                }
                return Ok(n.unsigned_abs());
            }
        }
    }
}

impl Input for Stdin {
    fn waker(&self) -> io::Result<Waker> {
        let tx = Arc::clone(&self.wake_tx);
        Ok(Waker::new(move || {
            // SAFETY: writes one byte from a live buffer to an fd the Arc keeps open.
            unsafe { libc::write(tx.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
        }))
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The user typed `^]`.
    Escaped,
    /// The input ended (EOF on a non-terminal stdin), as virtctl ends then too.
    InputClosed,
    /// Another client took over: the server said so ([`TAKEOVER_MESSAGE`], shown with
    /// the output) and hung up.
    TakenOver,
    /// The server hung up otherwise: the guest or the launcher stopped.
    Disconnected,
}

/// Copies `transport` to `output` and `input` to `transport` until `^]` in the input
/// (never sent), the input's end, or the transport's. The caller sets the terminal up.
pub fn run_session<T: Transport, I: Input, O: Write>(
    transport: T,
    mut input: I,
    output: &mut O,
) -> Result<SessionEnd, Error> {
    let (mut rx, mut tx, rx_waker) = transport.split().map_err(Error::Stream)?;
    let input_waker = input.waker().map_err(Error::Stream)?;
    // The first side to finish says why the session ended.
    let end: Arc<Mutex<Option<SessionEnd>>> = Arc::new(Mutex::new(None));
    let settle = |end: &Mutex<Option<SessionEnd>>, why: SessionEnd| {
        end.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(why);
    };

    let input_end = Arc::clone(&end);
    let typing = thread::Builder::new()
        .name("console-typing".into())
        .spawn(move || {
            let mut buf = [0u8; 1024];
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) => {
                        settle(&input_end, SessionEnd::InputClosed);
                        break;
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        settle(&input_end, SessionEnd::InputClosed);
                        break;
                    }
                };
                let chunk = &buf[..n];
                if let Some(at) = chunk.iter().position(|&b| b == ESCAPE) {
                    // What came before ^] in the same read was typed first: send it.
                    let _ = tx.write_all(&chunk[..at]).and_then(|()| tx.flush());
                    settle(&input_end, SessionEnd::Escaped);
                    break;
                }
                if tx.write_all(chunk).and_then(|()| tx.flush()).is_err() {
                    break;
                }
            }
            rx_waker.wake();
        })
        .map_err(Error::Stream)?;

    let mut buf = vec![0u8; 16 * 1024];
    let mut failure = None;
    // The last bytes shown, to tell a takeover notice from any other hang-up.
    let notice = TAKEOVER_MESSAGE.as_bytes();
    let mut tail: Vec<u8> = Vec::with_capacity(2 * notice.len());
    loop {
        match rx.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[n.saturating_sub(notice.len())..n]);
                if tail.len() > notice.len() {
                    tail.drain(..tail.len() - notice.len());
                }
                if let Err(e) = output.write_all(&buf[..n]).and_then(|()| output.flush()) {
                    failure = Some(e);
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A reset is a hang-up too.
            Err(_) => break,
        }
    }
    let hung_up = if tail == notice {
        SessionEnd::TakenOver
    } else {
        SessionEnd::Disconnected
    };
    settle(&end, hung_up);
    input_waker.wake();
    let _ = typing.join();
    if let Some(e) = failure {
        return Err(Error::Stream(e));
    }
    let why = *end.lock().unwrap_or_else(PoisonError::into_inner);
    Ok(why.unwrap_or(SessionEnd::Disconnected))
}

/// Connects to a console socket (`<state-dir>/console.sock`).
pub fn connect(sock_path: &Path) -> Result<UnixStream, Error> {
    UnixStream::connect(sock_path).map_err(|source| Error::Connect {
        path: sock_path.to_path_buf(),
        source,
    })
}

/// `virtctl console <vm>` on this process's terminal: prints the connected message, puts
/// stdin in raw mode when it is a terminal (restored on every way out), runs the session,
/// and leaves the cursor on a fresh line.
pub fn attach<T: Transport>(vm: &str, transport: T) -> Result<SessionEnd, Error> {
    let stdin = Stdin::new().map_err(Error::Stream)?;
    // Printed before raw mode so its newline is a real one; on stderr, as virtctl does,
    // so stdout carries only the guest's output.
    eprintln!("{}", connected_message(vm));
    let raw = RawMode::enter(libc::STDIN_FILENO).map_err(Error::RawMode)?;
    let stdout = io::stdout();
    let result = run_session(transport, stdin, &mut stdout.lock());
    drop(raw);
    match result {
        // The guest's last line may not end in a newline.
        Ok(SessionEnd::Escaped | SessionEnd::InputClosed | SessionEnd::TakenOver) => eprintln!(),
        Ok(SessionEnd::Disconnected) => eprint!("{DISCONNECTED_MESSAGE}"),
        Err(_) => {}
    }
    result
}
