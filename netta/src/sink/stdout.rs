//! The stdout sink.
use super::lines::{stop_requested, Lines};
use super::*;
use bytes::Bytes;
use std::io::{self, Write};
use tokio::sync::{mpsc, watch};

/// Writes one batch to stdout off the runtime; gives the buffer back emptied.
pub(super) async fn write_stdout(mut buf: Vec<u8>) -> (Vec<u8>, io::Result<()>) {
    tokio::task::spawn_blocking(move || {
        let mut out = io::stdout().lock();
        let r = out.write_all(&buf).and_then(|()| out.flush());
        buf.clear();
        (buf, r)
    })
    .await
    .unwrap_or_else(|e| (Vec::new(), Err(io::Error::other(e))))
}

pub(super) async fn run_stdout(
    mut rx: mpsc::Receiver<Bytes>,
    lines: Lines<'_>,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    lines.stats.set_connected(true);
    let mut buf = Vec::with_capacity(BATCH_BYTES + 4096);
    let mut stopping = false;
    while !stopping {
        let first = tokio::select! {
            biased;
            _ = stop_requested(&mut shutdown) => None,
            r = rx.recv() => r,
        };
        let mut n = 0u64;
        match first {
            Some(r) => {
                buf.extend_from_slice(&r);
                n += 1;
                while buf.len() < BATCH_BYTES {
                    match rx.try_recv() {
                        Ok(r) => {
                            buf.extend_from_slice(&r);
                            n += 1;
                        }
                        Err(_) => break,
                    }
                }
            }
            None => {
                stopping = true;
                while let Ok(r) = rx.try_recv() {
                    buf.extend_from_slice(&r);
                    n += 1;
                }
                if n == 0 {
                    break;
                }
            }
        }
        let (b, r) = write_stdout(std::mem::take(&mut buf)).await;
        buf = b;
        match r {
            Ok(()) => lines.stats.add_written(n),
            // The reader went away (`| head -1`): a normal end.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                lines.stats.add_dropped(n);
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
