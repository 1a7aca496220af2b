//! Try the console by hand.
//!
//! `console relay <qemu-serial.sock> <console.sock>`: relays QEMU's serial chardev until
//! stdin ends. `console attach <console.sock> <vm>`: what `virtctl console <vm>` does.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[1..] {
        ["relay", serial, sock] => relay(Path::new(serial), Path::new(sock)),
        ["attach", sock, vm] => oxivirt_console::connect(Path::new(sock))
            .and_then(|t| oxivirt_console::attach(vm, t))
            .map(|end| eprintln!("session ended: {end:?}")),
        _ => {
            eprintln!("usage: console relay <serial.sock> <console.sock> | console attach <console.sock> <vm>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn relay(serial: &Path, sock: &Path) -> Result<(), oxivirt_console::Error> {
    let guest = oxivirt_console::connect_chardev(serial, Duration::from_secs(10))?;
    let mut server = oxivirt_console::ConsoleServer::start(sock, guest)?;
    eprintln!("relaying on {}; end stdin to stop", sock.display());
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    server.stop();
    Ok(())
}
