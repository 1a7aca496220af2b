//! Helpers shared by the console's integration tests.
#![allow(dead_code)]

use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use oxivirt_testkit::cleanup::TempDir;

/// A private dir with the path a console socket gets in it.
pub fn sock_dir() -> (TempDir, PathBuf) {
    let dir = TempDir::new("console").expect("temp dir");
    let path = dir.path().join("console.sock");
    (dir, path)
}

/// Reads from `s` until what was read contains `needle`, or fails the test after
/// `timeout` with what did arrive.
pub fn read_until(s: &mut UnixStream, needle: &[u8], timeout: Duration) -> Vec<u8> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while !contains(&got, needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out waiting for {:?}; got {:?}",
            String::from_utf8_lossy(needle),
            String::from_utf8_lossy(&got)
        );
        s.set_read_timeout(Some(left)).expect("read timeout");
        match s.read(&mut buf) {
            Ok(0) => panic!(
                "EOF before {:?}; got {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(&got)
            ),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    got
}

/// Reads from `s` until EOF (a reset counts), failing the test after `timeout`.
pub fn read_to_eof(s: &mut UnixStream, timeout: Duration) -> Vec<u8> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no EOF within {timeout:?}; got {:?}",
            String::from_utf8_lossy(&got)
        );
        s.set_read_timeout(Some(left)).expect("read timeout");
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Reads exactly `n` bytes, failing the test after `timeout`.
pub fn read_exact(s: &mut UnixStream, n: usize, timeout: Duration) -> Vec<u8> {
    s.set_read_timeout(Some(timeout)).expect("read timeout");
    let mut got = vec![0u8; n];
    s.read_exact(&mut got).expect("read_exact");
    got
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

pub const T: Duration = Duration::from_secs(10);
