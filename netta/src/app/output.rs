//! Writing to stdout and waiting for a stop signal, shared by the commands.
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;

use crate::render::style;

/// A SIGINT or SIGTERM arrived (and was not yet consumed by [`take_stop`]).
static STOP: AtomicBool = AtomicBool::new(false);

/// The command ends gracefully on a stop signal (it watches [`stop_signal`]);
/// until one says so, a signal keeps its default action and ends the process.
static GRACEFUL: AtomicBool = AtomicBool::new(false);

extern "C" fn note_stop(sig: libc::c_int) {
    if !GRACEFUL.load(Ordering::SeqCst) {
        // SAFETY: signal() and raise() are async-signal-safe; the default action
        // ends the process as if no handler had been installed.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
        return;
    }
    STOP.store(true, Ordering::SeqCst);
}

/// Catches SIGINT and SIGTERM from the first instant of `main`: once
/// [`stop_gracefully`] is called, a signal during start-up is remembered instead
/// of killing the process half-way (or being swallowed by a tokio handler
/// nobody listens to yet). tokio's handlers, registered later, chain to this
/// one, so the flag sees every signal.
pub fn catch_stop_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with a handler that only stores an atomic
        // (async-signal-safe); the old action is not needed.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = note_stop as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// From now on a stop signal ends the command through [`stop_signal`] (which
/// flushes), not by the default action.
pub fn stop_gracefully() {
    GRACEFUL.store(true, Ordering::SeqCst);
}

/// Whether a stop signal has arrived.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Forgets a stop signal that was handled without ending the program (the
/// menu's monitor ends on Ctrl+C and goes back to the menu).
pub fn take_stop() {
    STOP.store(false, Ordering::SeqCst);
}

/// Resolves on Ctrl+C or SIGTERM, at once if one arrived before this was called.
pub async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    stop_gracefully();
    // Listen first, then look at the flag: a signal is either already in the
    // flag or wakes a listener.
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    if stop_requested() {
        return;
    }
    let next = async |s: &mut Option<tokio::signal::unix::Signal>| match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    };
    tokio::select! {
        _ = next(&mut int) => {}
        _ = next(&mut term) => {}
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
