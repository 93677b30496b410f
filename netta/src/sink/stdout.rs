//! The stdout sink.
use super::lines::{stop_requested, Lines};
use super::*;
use bytes::Bytes;
use std::io::{self, Write};
use tokio::sync::{mpsc, watch};

/// Writes the batches to stdout off the runtime, in order; gives the list back emptied.
pub(super) async fn write_stdout(mut bufs: Vec<Bytes>) -> (Vec<Bytes>, io::Result<()>) {
    tokio::task::spawn_blocking(move || {
        let mut out = io::stdout().lock();
        let r = bufs
            .iter()
            .try_for_each(|b| out.write_all(b))
            .and_then(|()| out.flush());
        bufs.clear();
        (bufs, r)
    })
    .await
    .unwrap_or_else(|e| (Vec::new(), Err(io::Error::other(e))))
}

pub(super) async fn run_stdout(
    mut rx: mpsc::Receiver<Chunk>,
    lines: Lines<'_>,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    lines.stats.set_connected(true);
    let mut bufs: Vec<Bytes> = Vec::new();
    let mut stopping = false;
    while !stopping {
        let first = tokio::select! {
            biased;
            _ = stop_requested(&mut shutdown) => None,
            r = rx.recv() => r,
        };
        let (mut n, mut bytes) = (0u64, 0usize);
        let mut take = |c: Chunk| {
            n += c.lines;
            bytes += c.data.len();
            bufs.push(c.data);
            bytes
        };
        match first {
            Some(c) => {
                let mut queued = take(c);
                while queued < BATCH_BYTES {
                    match rx.try_recv() {
                        Ok(c) => queued = take(c),
                        Err(_) => break,
                    }
                }
            }
            None => {
                stopping = true;
                while let Ok(c) = rx.try_recv() {
                    take(c);
                }
                if n == 0 {
                    break;
                }
            }
        }
        let (b, r) = write_stdout(std::mem::take(&mut bufs)).await;
        bufs = b;
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
