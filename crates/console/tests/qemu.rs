//! The relay on a real QEMU serial port: SeaBIOS's output arrives in the backlog.
//!
//! QEMU runs as the launcher will run it: paused (-S), the relay connected to the serial
//! chardev (`wait=off`), then `cont` over QMP.
//!
//! SeaBIOS writes to the serial port only with its serial console on: the fw_cfg file
//! `etc/sercon-port` holding the port (0x3f8) as a little-endian integer. (`string=0x3f8`
//! does not work: that is ASCII text, SeaBIOS reads the file's bytes as the number.)

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{read_to_eof, read_until, sock_dir};
use oxivirt_console::{connect, connect_chardev, ConsoleServer};

const QEMU: &str = "qemu-system-x86_64";

#[test]
fn seabios_output_reaches_the_backlog_and_a_late_client() {
    if oxivirt_testkit::which(QEMU).is_none() {
        oxivirt_testkit::skip(
            "qemu::seabios_output_reaches_the_backlog_and_a_late_client",
            "qemu-system-x86_64 is not installed (apt-get install -t bookworm-backports qemu-system-x86)",
        );
        return;
    }
    let (dir, console_sock) = sock_dir();
    let serial_sock = dir.path().join("serial.sock");
    let sercon = dir.path().join("sercon-port");
    fs::write(&sercon, 0x3f8u16.to_le_bytes()).expect("write the sercon file");
    let log = fs::File::create(dir.path().join("qemu.log")).expect("log");

    let qmp_sock = dir.path().join("qmp.sock");
    let mut cmd = Command::new(QEMU);
    cmd.args(["-nodefaults", "-display", "none", "-m", "32M"])
        .args(["-machine", "q35", "-accel", "tcg"])
        // The launcher's way: the guest starts paused (-S), the relay connects, then
        // `cont`; with wait=off nothing would wait for the relay otherwise.
        .arg("-S")
        .arg("-chardev")
        .arg(format!(
            "socket,id=s0,path={},server=on,wait=off",
            serial_sock.display()
        ))
        .args(["-serial", "chardev:s0"])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qmp_sock.display()))
        .arg("-fw_cfg")
        .arg(format!("name=etc/sercon-port,file={}", sercon.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let (mut qemu, _reg) = oxivirt_testkit::cleanup::spawn(&mut cmd).expect("start QEMU");

    let guest = connect_chardev(&serial_sock, Duration::from_secs(20)).expect("serial chardev");
    let mut server = ConsoleServer::start(&console_sock, guest).expect("console server");
    let qmp = connect_chardev(&qmp_sock, Duration::from_secs(20)).expect("QMP socket");
    qmp_run(&qmp, &["qmp_capabilities", "cont"]);

    let boot = Duration::from_secs(60);
    let mut first = connect(&console_sock).expect("connect");
    read_until(&mut first, b"Booting from ", boot);
    // This client comes after SeaBIOS's banner: it sees it only through the backlog.
    let mut late = connect(&console_sock).expect("connect");
    let seen = read_until(&mut late, b"Booting from ", boot);
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains("SeaBIOS (version "), "{text:?}");
    // Nothing was lost before the relay connected: the backlog starts with the terminal
    // reset SeaBIOS's serial console sends first.
    assert!(seen.starts_with(b"\x1bc"), "{text:?}");

    // QEMU goes away: the attached client is hung up on.
    qemu.kill().expect("kill QEMU");
    qemu.wait().expect("reap QEMU");
    read_to_eof(&mut late, boot);
    server.stop();
    assert!(!console_sock.exists());
}

/// Just enough QMP for the test: the greeting, then each command up to its `return`.
fn qmp_run(qmp: &UnixStream, commands: &[&str]) {
    qmp.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut lines = BufReader::new(qmp.try_clone().expect("clone")).lines();
    let greeting = lines.next().expect("greeting").expect("read");
    assert!(greeting.contains("\"QMP\""), "{greeting}");
    let mut w = qmp;
    for cmd in commands {
        writeln!(w, "{{\"execute\":\"{cmd}\"}}").expect("send");
        loop {
            let line = lines.next().expect("reply").expect("read");
            assert!(!line.contains("\"error\""), "{cmd}: {line}");
            if line.contains("\"return\"") {
                break;
            }
        }
    }
}
