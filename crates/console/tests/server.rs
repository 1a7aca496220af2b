//! The relay on a real unix socket, with a fake guest: a socketpair whose other end the
//! test reads and writes as the serial port would.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};

use common::{contains, read_exact, read_to_eof, read_until, sock_dir, T};
use oxivirt_console::{ConsoleServer, Error, DEFAULT_BACKLOG, TAKEOVER_MESSAGE};

/// A server relaying one end of a socketpair; the other end is the "serial port".
fn fake_guest(path: &std::path::Path) -> (ConsoleServer, UnixStream) {
    let (ours, port) = UnixStream::pair().expect("socketpair");
    let server = ConsoleServer::start(path, ours).expect("start the console server");
    (server, port)
}

fn client(path: &std::path::Path) -> UnixStream {
    oxivirt_console::connect(path).expect("connect")
}

#[test]
fn boot_output_written_before_any_client_is_shown_to_the_first_and_the_next() {
    let (_dir, path) = sock_dir();
    let (_server, mut port) = fake_guest(&path);
    port.write_all(b"SeaBIOS (fake)\r\nLinux version 6.1\r\n")
        .expect("guest writes");

    let mut first = client(&path);
    read_until(&mut first, b"Linux version 6.1\r\n", T);
    drop(first);
    // Written before this client existed: it can only come from the backlog, in order.
    let mut second = client(&path);
    let got = read_until(&mut second, b"Linux version 6.1\r\n", T);
    assert!(got.starts_with(b"SeaBIOS (fake)\r\n"), "{got:?}");
}

#[test]
fn the_backlog_wraps_keeping_the_newest_mib() {
    let (_dir, path) = sock_dir();
    let (_server, mut port) = fake_guest(&path);
    // A stream with no period, so a wrong starting offset cannot match by accident.
    let mut x: u32 = 12345;
    let mut stream: Vec<u8> = (0..DEFAULT_BACKLOG + 300 * 1024)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    stream.extend_from_slice(b"<END>");

    // A live client seeing <END> proves the relay has taken all of it into the backlog
    // (the backlog is written before the client).
    let mut watcher = client(&path);
    let writer = std::thread::spawn({
        let stream = stream.clone();
        let mut port = port.try_clone().expect("clone");
        move || port.write_all(&stream).expect("guest writes")
    });
    read_until(&mut watcher, b"<END>", T);
    writer.join().expect("writer");

    let mut late = client(&path);
    let backlog = read_exact(&mut late, DEFAULT_BACKLOG, T);
    assert!(
        backlog == stream[stream.len() - DEFAULT_BACKLOG..],
        "the backlog is not the newest {DEFAULT_BACKLOG} bytes"
    );
    // Nothing older follows: the next bytes are live ones.
    port.write_all(b"live").expect("guest writes");
    assert_eq!(read_exact(&mut late, 4, T), b"live");
}

#[test]
fn typing_reaches_the_guest_and_output_reaches_the_client() {
    let (_dir, path) = sock_dir();
    let (_server, mut port) = fake_guest(&path);
    let mut c = client(&path);
    port.write_all(b"login: ").expect("guest writes");
    read_until(&mut c, b"login: ", T);
    c.write_all(b"cirros\r").expect("client types");
    read_until(&mut port, b"cirros\r", T);
}

#[test]
fn a_second_client_takes_over_and_the_first_is_told_why() {
    let (_dir, path) = sock_dir();
    let (_server, mut port) = fake_guest(&path);
    let mut first = client(&path);
    port.write_all(b"one\n").expect("guest writes");
    read_until(&mut first, b"one\n", T);

    let mut second = client(&path);
    let tail = read_to_eof(&mut first, T);
    assert!(
        tail.ends_with(TAKEOVER_MESSAGE.as_bytes()),
        "the first client's last bytes: {:?}",
        String::from_utf8_lossy(&tail)
    );
    // The first can no longer type into the guest (its socket is shut down).
    let _ = first.write_all(b"IGNORED");

    read_until(&mut second, b"one\n", T);
    port.write_all(b"two\n").expect("guest writes");
    read_until(&mut second, b"two\n", T);
    second.write_all(b"mine\n").expect("second types");
    let typed = read_until(&mut port, b"mine\n", T);
    assert!(!contains(&typed, b"IGNORED"), "{typed:?}");
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let (_dir, path) = sock_dir();
    // A listener dropped without unlinking: what a killed launcher leaves.
    drop(UnixListener::bind(&path).expect("bind"));
    assert!(path.exists());
    let (_server, mut port) = fake_guest(&path);
    let mut c = client(&path);
    port.write_all(b"fresh").expect("guest writes");
    read_until(&mut c, b"fresh", T);
}

#[test]
fn a_live_socket_is_refused_and_keeps_working() {
    let (_dir, path) = sock_dir();
    let (_server, mut port) = fake_guest(&path);
    let (other, _other_port) = UnixStream::pair().expect("socketpair");
    match ConsoleServer::start(&path, other) {
        Err(Error::InUse { path: p }) => assert_eq!(p, path),
        other => panic!("expected InUse, got {other:?}"),
    }
    let mut c = client(&path);
    port.write_all(b"still here").expect("guest writes");
    read_until(&mut c, b"still here", T);
}

#[test]
fn a_file_that_is_not_a_socket_is_left_alone() {
    let (_dir, path) = sock_dir();
    fs::write(&path, b"precious").expect("write");
    let (g, _port) = UnixStream::pair().expect("socketpair");
    assert!(matches!(
        ConsoleServer::start(&path, g),
        Err(Error::NotASocket { .. })
    ));
    assert_eq!(fs::read(&path).expect("read"), b"precious");
}

#[test]
fn the_socket_is_private() {
    let (_dir, path) = sock_dir();
    let (_server, _port) = fake_guest(&path);
    let meta = fs::metadata(&path).expect("stat");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}

#[test]
fn a_path_longer_than_sun_path_is_refused_clearly() {
    let (dir, _) = sock_dir();
    let long = dir.path().join("x".repeat(120)).join("console.sock");
    let (g, _port) = UnixStream::pair().expect("socketpair");
    let err = ConsoleServer::start(&long, g).expect_err("too long");
    assert!(matches!(err, Error::PathTooLong { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("108") && text.contains("at most 107 bytes"),
        "{text}"
    );
}

#[test]
fn stop_hangs_up_joins_and_removes_the_socket() {
    let (_dir, path) = sock_dir();
    let (mut server, mut port) = fake_guest(&path);
    let mut c = client(&path);
    port.write_all(b"hi").expect("guest writes");
    read_until(&mut c, b"hi", T);

    server.stop();
    assert!(!path.exists(), "the socket file is still there");
    assert_eq!(read_to_eof(&mut c, T), b"");
    // The guest side is let go too.
    port.set_read_timeout(Some(T)).expect("timeout");
    let mut buf = [0u8; 8];
    assert_eq!(port.read(&mut buf).expect("read"), 0);
    assert!(client_refused(&path));
    server.stop();
}

fn client_refused(path: &std::path::Path) -> bool {
    UnixStream::connect(path).is_err()
}

#[test]
fn after_the_guest_ends_a_client_gets_the_backlog_then_eof() {
    let (_dir, path) = sock_dir();
    let (_server, mut port) = fake_guest(&path);
    let mut attached = client(&path);
    port.write_all(b"Kernel panic - not syncing")
        .expect("guest writes");
    read_until(&mut attached, b"not syncing", T);
    drop(port);
    // The attached client is hung up on when the guest's stream ends...
    read_to_eof(&mut attached, T);
    // ...and a later one still sees why the guest went away.
    let mut late = client(&path);
    assert_eq!(read_to_eof(&mut late, T), b"Kernel panic - not syncing");
}

#[test]
fn a_client_that_stops_reading_does_not_stall_the_guest() {
    use std::sync::mpsc;
    let (_dir, path) = sock_dir();
    let (ours, mut port) = UnixStream::pair().expect("socketpair");
    let opts = oxivirt_console::Options {
        client_write_timeout: std::time::Duration::from_millis(200),
        // A backlog that fits in a socket buffer: the next client's replay then never
        // waits on its reader, which a loaded machine may stall past the 200 ms that are
        // meant for the stuck client.
        backlog: 4096,
    };
    let _server = ConsoleServer::start_with(&path, ours, opts).expect("server");
    let _stuck = client(&path); // never reads

    // Far more than the socket buffers hold: it flows only if the relay drops the client.
    let (done_tx, done) = mpsc::channel();
    let mut writer = port.try_clone().expect("clone");
    std::thread::spawn(move || {
        let chunk = vec![b'.'; 64 * 1024];
        for _ in 0..64 {
            writer.write_all(&chunk).expect("guest writes");
        }
        let _ = done_tx.send(());
    });
    done.recv_timeout(T)
        .expect("the guest's output kept flowing");
    let mut next = client(&path);
    port.write_all(b"<after>").expect("guest writes");
    read_until(&mut next, b"<after>", T);
}
