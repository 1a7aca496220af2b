//! The client session over in-memory streams (socketpairs: one for the console
//! transport, one for a non-terminal stdin), and over a real console server.

mod common;

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::thread;

use common::{read_to_eof, read_until, sock_dir, T};
use oxivirt_console::{
    connected_message, run_session, ConsoleServer, RawMode, SessionEnd, TAKEOVER_MESSAGE,
};

/// Runs a session on its own thread: (the server's end of the transport, the typing
/// end of the input, the session's outcome with everything it printed).
fn session() -> (
    UnixStream,
    UnixStream,
    mpsc::Receiver<(SessionEnd, Vec<u8>)>,
) {
    let (transport, server_end) = UnixStream::pair().expect("socketpair");
    let (input, keyboard) = UnixStream::pair().expect("socketpair");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut out = Vec::new();
        let end = run_session(transport, input, &mut out).expect("session");
        let _ = tx.send((end, out));
    });
    (server_end, keyboard, rx)
}

#[test]
fn the_connected_message_is_virtctls() {
    assert_eq!(
        connected_message("testvm-2"),
        "Successfully connected to testvm-2 console. The escape sequence is ^]"
    );
}

#[test]
fn escape_ends_the_session_without_reaching_the_guest() {
    let (mut server, mut keyboard, done) = session();
    keyboard.write_all(b"ls\r").expect("type");
    read_until(&mut server, b"ls\r", T);
    // Typed in one burst: what precedes ^] goes, ^] and what follows do not.
    keyboard.write_all(b"pwd\r\x1dexit\r").expect("type");
    let rest = read_to_eof(&mut server, T);
    assert_eq!(rest, b"pwd\r");
    let (end, _) = done.recv_timeout(T).expect("the session ended");
    assert_eq!(end, SessionEnd::Escaped);
}

#[test]
fn output_is_shown_and_a_hang_up_ends_the_session() {
    let (mut server, _keyboard, done) = session();
    server.write_all(b"login: ").expect("write");
    drop(server);
    // The session returns although its input never ended: the typing reader was woken.
    let (end, out) = done.recv_timeout(T).expect("the session ended");
    assert_eq!(end, SessionEnd::Disconnected);
    assert_eq!(out, b"login: ");
}

#[test]
fn a_takeover_notice_in_pieces_is_still_recognised() {
    let (mut server, _keyboard, done) = session();
    let notice = TAKEOVER_MESSAGE.as_bytes();
    let (a, b) = notice.split_at(notice.len() / 2);
    server.write_all(b"prompt$ ").expect("write");
    server.write_all(a).expect("write");
    server.flush().expect("flush");
    server.write_all(b).expect("write");
    drop(server);
    let (end, out) = done.recv_timeout(T).expect("the session ended");
    assert_eq!(end, SessionEnd::TakenOver);
    assert_eq!(out, [b"prompt$ ".as_slice(), notice].concat());
}

#[test]
fn the_end_of_a_non_terminal_input_ends_the_session() {
    let (mut server, keyboard, done) = session();
    drop(keyboard);
    let (end, _) = done.recv_timeout(T).expect("the session ended");
    assert_eq!(end, SessionEnd::InputClosed);
    assert_eq!(read_to_eof(&mut server, T), b"");
}

#[test]
fn through_a_console_server_typing_output_and_a_takeover() {
    let (_dir, path) = sock_dir();
    let (guest, mut port) = UnixStream::pair().expect("socketpair");
    let _server = ConsoleServer::start(&path, guest).expect("server");
    port.write_all(b"boot done\r\n").expect("guest writes");

    let (input, mut keyboard) = UnixStream::pair().expect("socketpair");
    let transport = oxivirt_console::connect(&path).expect("connect");
    let (tx, done) = mpsc::channel();
    thread::spawn(move || {
        let mut out = Vec::new();
        let end = run_session(transport, input, &mut out).expect("session");
        let _ = tx.send((end, out));
    });
    keyboard.write_all(b"uname\r").expect("type");
    read_until(&mut port, b"uname\r", T);

    // Another user connects: this session shows why and ends.
    let mut other = oxivirt_console::connect(&path).expect("connect");
    let (end, out) = done.recv_timeout(T).expect("the session ended");
    assert_eq!(end, SessionEnd::TakenOver);
    // Whether the boot output reached this session depends on when the server's guest
    // reader took it in (before or after the takeover); the backlog has it either way.
    assert!(out.ends_with(TAKEOVER_MESSAGE.as_bytes()), "{out:?}");
    read_until(&mut other, b"boot done\r\n", T);
}

/// A pseudo-terminal pair: (controller, terminal).
fn pty() -> (OwnedFd, OwnedFd) {
    let (mut controller, mut terminal) = (0, 0);
    // SAFETY: openpty writes two new fds; the null name/termios/winsize are allowed.
    let rc = unsafe {
        libc::openpty(
            &mut controller,
            &mut terminal,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just created and are owned by nobody else.
    unsafe {
        (
            OwnedFd::from_raw_fd(controller),
            OwnedFd::from_raw_fd(terminal),
        )
    }
}

fn lflag(fd: &OwnedFd) -> libc::tcflag_t {
    // SAFETY: an all-zero termios is a valid value for tcgetattr to overwrite.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: tcgetattr fills `t` for a live fd.
    assert_eq!(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) }, 0);
    t.c_lflag
}

#[test]
fn raw_mode_on_a_terminal_is_restored_on_drop() {
    let (_controller, terminal) = pty();
    let before = lflag(&terminal);
    assert_ne!(before & libc::ICANON, 0, "a new pty starts canonical");
    let raw = RawMode::enter(terminal.as_raw_fd())
        .expect("raw mode")
        .expect("a pty is a terminal");
    let during = lflag(&terminal);
    assert_eq!(during & (libc::ICANON | libc::ECHO | libc::ISIG), 0);
    drop(raw);
    assert_eq!(lflag(&terminal), before);
}

#[test]
fn raw_mode_is_restored_when_the_session_panics() {
    let (_controller, terminal) = pty();
    let before = lflag(&terminal);
    let fd = terminal.as_raw_fd();
    let r = std::panic::catch_unwind(|| {
        let _raw = RawMode::enter(fd).expect("raw mode").expect("a terminal");
        panic!("boom");
    });
    assert!(r.is_err());
    assert_eq!(lflag(&terminal), before);
}

#[test]
fn raw_mode_leaves_a_non_terminal_alone() {
    let (a, _b) = UnixStream::pair().expect("socketpair");
    assert!(RawMode::enter(a.as_raw_fd()).expect("no error").is_none());
}

/// Set in the child of `raw_mode_is_restored_when_a_signal_ends_the_process`: the fd of
/// the terminal it puts in raw mode.
const CHILD_FD: &str = "OXIVIRT_CONSOLE_TEST_RAW_FD";

/// Not a test on its own: the child process of the signal test (does nothing otherwise).
#[test]
fn child_holds_raw_mode_until_killed() {
    let Some(fd) = std::env::var(CHILD_FD).ok() else {
        return;
    };
    let fd: i32 = fd.parse().expect("fd");
    let _raw = RawMode::enter(fd).expect("raw mode").expect("a terminal");
    loop {
        thread::park();
    }
}

#[test]
fn raw_mode_is_restored_when_a_signal_ends_the_process() {
    use std::os::unix::process::ExitStatusExt;
    let (_controller, terminal) = pty();
    let before = lflag(&terminal);
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "--exact",
        "child_holds_raw_mode_until_killed",
        "--nocapture",
    ])
    .env(CHILD_FD, terminal.as_raw_fd().to_string())
    .stdout(std::process::Stdio::null());
    let (mut child, _reg) = oxivirt_testkit::cleanup::spawn(&mut cmd).expect("spawn");
    assert!(
        oxivirt_testkit::eventually(T, || lflag(&terminal) & libc::ICANON == 0),
        "the child never made the terminal raw"
    );
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: signals our own child, not yet reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = child.wait().expect("wait");
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    assert_eq!(lflag(&terminal), before);
}
