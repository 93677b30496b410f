//! Writing to stdout and waiting for a stop signal, shared by the commands.
use std::io::Write;

use anyhow::Context as _;

use crate::render::style;

/// Resolves on Ctrl+C or SIGTERM.
pub async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

pub(crate) fn is_broken_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

/// The reader of our stdout pipe went away (`netta events | head -1`): poll reports
/// an error on the write end even when there is nothing to write.
pub(crate) fn stdout_closed() -> bool {
    let mut fd = libc::pollfd {
        fd: 1,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no timeout.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    n > 0 && fd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
pub fn print_out(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if !is_broken_pipe(&e) => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}

/// Interactive output: errors writing to the terminal are not worth stopping for.
pub fn print_raw(text: &str) {
    let _ = print_out(text);
}

/// Rendered views, coloured when stdout is a terminal.
pub fn print_styled(text: &str) {
    print_raw(&style::for_stdout(text));
}
