//! The bounded queue of lines waiting for a destination. It holds the batches
//! ([`Chunk`]) the fan-out serialised once for every sink, shared, not copied;
//! a batch is cut only where a bound or a partial write falls inside it.
use std::collections::VecDeque;

use bytes::{Buf, Bytes};

use super::Chunk;

/// A line partly written, or the `events-lost` notice being written.
#[derive(Debug)]
pub(super) struct Current {
    pub(super) line: Bytes,
    pub(super) sent: usize,
    /// Non-zero for a notice: the dropped lines it reports.
    pub(super) lost: u64,
}

/// The lines waiting for the destination, bounded: pushing past a bound drops the
/// oldest lines, and the next thing written is a notice of how many were dropped.
/// Writes may stop mid-line: the rest of that line is written next on the same
/// connection, or the whole line again after [`Backlog::rewind`].
#[derive(Debug)]
pub(super) struct Backlog {
    chunks: VecDeque<Chunk>,
    /// Bytes and record lines in `chunks` (not `cur`).
    bytes: usize,
    lines: u64,
    max_lines: u64,
    max_bytes: usize,
    /// Lines dropped and not yet reported by a written notice.
    pub(super) unreported: u64,
    cur: Option<Current>,
}

/// The length of the first line of `data`, its newline included.
fn first_line(data: &[u8]) -> usize {
    memchr::memchr(b'\n', data).map_or(data.len(), |i| i + 1)
}

impl Backlog {
    pub(super) fn new(max_lines: usize, max_bytes: usize) -> Backlog {
        Backlog {
            chunks: VecDeque::new(),
            bytes: 0,
            lines: 0,
            max_lines: max_lines.max(1) as u64,
            max_bytes,
            unreported: 0,
            cur: None,
        }
    }

    /// Nothing to write: no line and no notice.
    pub(super) fn is_idle(&self) -> bool {
        self.cur.is_none() && self.chunks.is_empty() && self.unreported == 0
    }

    /// Record lines waiting (the one partly written included).
    pub(super) fn lines(&self) -> u64 {
        self.lines + u64::from(self.cur.as_ref().is_some_and(|c| c.lost == 0))
    }

    /// Bytes of the lines queued (the one partly written not included).
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    fn fits(&self, len: usize, lines: u64) -> bool {
        self.lines + lines <= self.max_lines && self.bytes + len <= self.max_bytes
    }

    /// Queues a batch of whole lines, dropping the oldest lines to make room (a
    /// line longer than the byte bound is dropped itself); returns how many
    /// lines were dropped.
    pub(super) fn push(&mut self, chunk: Chunk) -> u64 {
        if chunk.lines == 0 {
            return 0;
        }
        if chunk.data.len() > self.max_bytes {
            if chunk.lines == 1 {
                self.unreported += 1;
                return 1;
            }
            // Rare: line by line, so only a line too long for the bound goes.
            let mut data = chunk.data;
            let mut dropped = 0;
            while !data.is_empty() {
                let line = data.split_to(first_line(&data));
                dropped += self.push(Chunk {
                    data: line,
                    lines: 1,
                });
            }
            return dropped;
        }
        self.bytes += chunk.data.len();
        self.lines += chunk.lines;
        self.chunks.push_back(chunk);
        let mut dropped = 0;
        while self.lines > self.max_lines || self.bytes > self.max_bytes {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            let over_without = self.lines - front.lines > self.max_lines
                || self.bytes - front.data.len() > self.max_bytes;
            if over_without || front.lines == 1 {
                self.bytes -= front.data.len();
                self.lines -= front.lines;
                dropped += front.lines;
                self.chunks.pop_front();
            } else {
                let n = first_line(&front.data);
                front.data.advance(n);
                front.lines -= 1;
                self.bytes -= n;
                self.lines -= 1;
                dropped += 1;
            }
        }
        self.unreported += dropped;
        dropped
    }

    /// Makes the notice of dropped lines the current line, if one is due.
    fn notice_due(&mut self, notice: impl FnOnce(u64) -> Vec<u8>) {
        if self.cur.is_none() && self.unreported > 0 {
            self.cur = Some(Current {
                line: Bytes::from(notice(self.unreported)),
                sent: 0,
                lost: self.unreported,
            });
        }
    }

    /// The next bytes to write: the rest of the current line, else a notice of the
    /// dropped lines (made by `notice`), else queued lines (at most `max` bytes).
    pub(super) fn chunk(&mut self, max: usize, notice: impl FnOnce(u64) -> Vec<u8>) -> &[u8] {
        self.notice_due(notice);
        if let Some(c) = &self.cur {
            return &c.line[c.sent..];
        }
        match self.chunks.front() {
            Some(f) => &f.data[..f.data.len().min(max.max(1))],
            None => &[],
        }
    }

    /// Everything to write, in order, as shared buffers (one `writev`): the rest of
    /// the current line or the notice, then whole batches up to about `max` bytes.
    pub(super) fn pending(
        &mut self,
        max: usize,
        notice: impl FnOnce(u64) -> Vec<u8>,
    ) -> Vec<Bytes> {
        self.notice_due(notice);
        let mut out = Vec::with_capacity(self.chunks.len().min(64) + 1);
        let mut total = 0;
        if let Some(c) = &self.cur {
            out.push(c.line.slice(c.sent..));
            total += c.line.len() - c.sent;
        }
        for c in &self.chunks {
            if total >= max {
                break;
            }
            out.push(c.data.clone());
            total += c.data.len();
        }
        out
    }

    /// `n` bytes of what [`Backlog::chunk`] or [`Backlog::pending`] gave were
    /// written; returns how many record lines that completed.
    pub(super) fn consume(&mut self, mut n: usize) -> u64 {
        let mut done = 0;
        if let Some(c) = &mut self.cur {
            let take = n.min(c.line.len() - c.sent);
            c.sent += take;
            n -= take;
            if c.sent < c.line.len() {
                return 0;
            }
            let lost = c.lost;
            self.cur = None;
            if lost > 0 {
                self.unreported = self.unreported.saturating_sub(lost);
            } else {
                done += 1;
            }
        }
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            let len = front.data.len();
            if n >= len {
                n -= len;
                self.bytes -= len;
                self.lines -= front.lines;
                done += front.lines;
                self.chunks.pop_front();
                continue;
            }
            // A write stopped inside this batch: whole lines are done; a line cut
            // in two is kept apart, so dropping the oldest cannot cut it.
            let head = &front.data[..n];
            let whole = memchr::memchr_iter(b'\n', head).count() as u64;
            let start = memchr::memrchr(b'\n', head).map_or(0, |i| i + 1);
            done += whole;
            if start == n {
                front.data.advance(n);
                front.lines -= whole;
                self.bytes -= n;
                self.lines -= whole;
                break;
            }
            let end = n + first_line(&front.data[n..]);
            self.cur = Some(Current {
                line: front.data.slice(start..end),
                sent: n - start,
                lost: 0,
            });
            front.data.advance(end);
            front.lines -= whole + 1;
            self.bytes -= end;
            self.lines -= whole + 1;
            if front.data.is_empty() {
                self.chunks.pop_front();
            }
            break;
        }
        done
    }

    /// Takes whole lines from the front, about `max` bytes (at least one line),
    /// for a request body: (the buffers, record lines). Notices are the caller's.
    pub(super) fn take_lines(&mut self, max: usize) -> (Vec<Bytes>, u64) {
        let mut out = Vec::new();
        let (mut total, mut lines) = (0, 0);
        while let Some(front) = self.chunks.front_mut() {
            let room = max.saturating_sub(total);
            if front.data.len() <= room || (lines == 0 && front.lines == 1) {
                total += front.data.len();
                lines += front.lines;
                self.bytes -= front.data.len();
                self.lines -= front.lines;
                out.push(front.data.clone());
                self.chunks.pop_front();
                continue;
            }
            // Part of this batch: the lines that fit, or the first one alone.
            let cut = match memchr::memrchr(b'\n', &front.data[..room.min(front.data.len())]) {
                Some(i) => i + 1,
                None if lines == 0 => first_line(&front.data),
                None => break,
            };
            let part = front.data.split_to(cut);
            let k = memchr::memchr_iter(b'\n', &part).count() as u64;
            front.lines -= k;
            self.bytes -= cut;
            self.lines -= k;
            lines += k;
            out.push(part);
            break;
        }
        (out, lines)
    }

    /// The connection was lost: the line partly written goes back to the front to
    /// be sent whole (a notice is simply made again). Returns lines dropped.
    pub(super) fn rewind(&mut self) -> u64 {
        let Some(c) = self.cur.take() else { return 0 };
        if c.lost > 0 {
            return 0;
        }
        if !self.fits(c.line.len(), 1) {
            // It is the oldest line: the one to drop.
            self.unreported += 1;
            return 1;
        }
        self.bytes += c.line.len();
        self.lines += 1;
        self.chunks.push_front(Chunk {
            data: c.line,
            lines: 1,
        });
        0
    }

    /// Empties the backlog; returns the record lines thrown away.
    pub(super) fn discard(&mut self) -> u64 {
        let n = self.lines();
        self.chunks.clear();
        self.bytes = 0;
        self.lines = 0;
        self.cur = None;
        self.unreported = 0;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(i: u32) -> Vec<u8> {
        format!("line {i:04}\n").into_bytes() // 10 bytes
    }

    /// One batch of lines `ids`.
    fn batch(ids: std::ops::RangeInclusive<u32>) -> Chunk {
        let mut data = Vec::new();
        let mut lines = 0;
        for i in ids {
            data.extend_from_slice(&line(i));
            lines += 1;
        }
        Chunk {
            data: Bytes::from(data),
            lines,
        }
    }

    fn one(i: u32) -> Chunk {
        batch(i..=i)
    }

    fn notice(n: u64) -> Vec<u8> {
        format!("lost {n}\n").into_bytes()
    }

    /// A one-line backlog that dropped line 1 for line 2: its next chunk is the
    /// `lost 1` notice.
    fn notice_due() -> Backlog {
        let mut b = Backlog::new(1, 1 << 20);
        b.push(one(1));
        b.push(one(2));
        assert_eq!(b.chunk(100, notice), b"lost 1\n");
        b
    }

    /// Writes everything queued, as a peer would receive it.
    fn write_all(b: &mut Backlog) -> (String, u64) {
        let mut out = Vec::new();
        let mut done = 0;
        while !b.is_idle() {
            let c = b.chunk(1 << 20, notice).to_vec();
            out.extend_from_slice(&c);
            done += b.consume(c.len());
        }
        (String::from_utf8(out).unwrap(), done)
    }

    #[test]
    fn backlog_drops_the_oldest_lines_past_the_line_bound() {
        let mut b = Backlog::new(3, 1 << 20);
        let dropped: u64 = (1..=5).map(|i| b.push(one(i))).sum();
        assert_eq!(dropped, 2);
        assert_eq!(b.lines(), 3);
        let (out, done) = write_all(&mut b);
        assert_eq!(out, "lost 2\nline 0003\nline 0004\nline 0005\n");
        assert_eq!(done, 3);
        assert!(b.is_idle());
        // Reported once.
        b.push(one(6));
        assert_eq!(write_all(&mut b).0, "line 0006\n");
    }

    #[test]
    fn a_batch_past_the_bounds_keeps_its_newest_lines_and_counts_each_drop() {
        // Lines: the oldest of a batch go one by one, whole batches at once.
        let mut b = Backlog::new(5, 1 << 20);
        assert_eq!(b.push(batch(1..=3)), 0);
        assert_eq!(b.push(batch(4..=7)), 2);
        assert_eq!(b.push(batch(8..=15)), 8, "all older lines and 3 of its own");
        assert_eq!(b.lines(), 5);
        assert_eq!(b.bytes(), 50);
        let (out, done) = write_all(&mut b);
        let want: String = (11..=15).map(|i| format!("line {i:04}\n")).collect();
        assert_eq!(out, format!("lost 10\n{want}"));
        assert_eq!(done, 5);
        // Bytes: 35 hold three lines.
        let mut b = Backlog::new(100, 35);
        assert_eq!(b.push(batch(1..=2)), 0);
        assert_eq!(b.push(batch(3..=4)), 1);
        assert_eq!(
            write_all(&mut b).0,
            "lost 1\nline 0002\nline 0003\nline 0004\n"
        );
    }

    #[test]
    fn backlog_drops_the_oldest_lines_past_the_byte_bound() {
        let mut b = Backlog::new(100, 35);
        for i in 1..=3 {
            assert_eq!(b.push(one(i)), 0);
        }
        // 40 bytes would not fit: the oldest goes.
        assert_eq!(b.push(one(4)), 1);
        let big = Chunk {
            data: Bytes::from(vec![b'x'; 25]),
            lines: 1,
        };
        // 25 + 30 > 35: two more go, keeping line 4.
        assert_eq!(b.push(big), 2);
        // Larger than the whole buffer: dropped itself, the others stay.
        let huge = Chunk {
            data: Bytes::from(vec![b'y'; 36]),
            lines: 1,
        };
        assert_eq!(b.push(huge), 1);
        assert_eq!(b.lines(), 2);
        let (out, done) = write_all(&mut b);
        assert_eq!(out, format!("lost 4\nline 0004\n{}", "x".repeat(25)));
        assert_eq!(done, 2);
        // A batch holding a line too long for the bound: that line alone goes.
        let mut b = Backlog::new(100, 35);
        let mut data = line(1);
        data.extend_from_slice(&[b'z'; 39]);
        data.push(b'\n');
        data.extend_from_slice(&line(2));
        let mixed = Chunk {
            data: Bytes::from(data),
            lines: 3,
        };
        assert_eq!(b.push(mixed), 1);
        assert_eq!(
            write_all(&mut b),
            ("lost 1\nline 0001\nline 0002\n".into(), 2)
        );
    }

    #[test]
    fn partial_writes_complete_lines_in_order() {
        let mut b = Backlog::new(10, 1 << 20);
        b.push(batch(1..=3));
        // 15 bytes: line 1 whole, half of line 2.
        assert_eq!(&b.chunk(15, notice)[..15], b"line 0001\nline ");
        assert_eq!(b.consume(15), 1);
        assert_eq!(b.lines(), 2);
        // Dropping the oldest while line 2 is half sent never cuts it.
        let mut small = Backlog::new(1, 1 << 20);
        small.push(one(1));
        assert_eq!(small.chunk(4, notice), b"line");
        small.consume(4);
        assert_eq!(
            small.push(one(2)),
            0,
            "the partly written line is not queued"
        );
        assert_eq!(write_all(&mut small).0, " 0001\nline 0002\n");
        // Back to the first backlog: the rest of line 2, then line 3.
        assert_eq!(b.chunk(100, notice), b"0002\n");
        assert_eq!(b.consume(3), 0);
        assert_eq!(b.consume(2), 1);
        assert_eq!(write_all(&mut b), ("line 0003\n".to_string(), 1));
        // A write ending on a line's end inside a batch cuts nothing.
        let mut b = Backlog::new(10, 1 << 20);
        b.push(batch(1..=3));
        assert_eq!(b.consume(20), 2);
        assert_eq!(write_all(&mut b), ("line 0003\n".to_string(), 1));
    }

    #[test]
    fn pending_is_everything_in_order_and_consume_spans_batches() {
        let mut b = Backlog::new(3, 1 << 20);
        b.push(batch(1..=2));
        b.push(batch(3..=4)); // drops line 1
        let all: Vec<u8> = b.pending(1 << 20, notice).concat();
        assert_eq!(all, b"lost 1\nline 0002\nline 0003\nline 0004\n");
        // The notice, line 2, and half of line 3 went out.
        assert_eq!(b.consume(7 + 10 + 5), 1);
        let rest: Vec<u8> = b.pending(1 << 20, notice).concat();
        assert_eq!(rest, b"0003\nline 0004\n");
        assert_eq!(b.consume(rest.len()), 2);
        assert!(b.is_idle());
    }

    #[test]
    fn take_lines_cuts_batches_at_line_ends() {
        let mut b = Backlog::new(100, 1 << 20);
        b.push(batch(1..=3));
        b.push(batch(4..=5));
        let (bufs, n) = b.take_lines(25);
        assert_eq!((bufs.concat(), n), (b"line 0001\nline 0002\n".to_vec(), 2));
        let (bufs, n) = b.take_lines(25);
        assert_eq!((bufs.concat(), n), (b"line 0003\nline 0004\n".to_vec(), 2));
        // Less room than one line: the first line alone.
        let (bufs, n) = b.take_lines(3);
        assert_eq!((bufs.concat(), n), (b"line 0005\n".to_vec(), 1));
        assert_eq!((b.lines(), b.bytes()), (0, 0));
        assert_eq!(b.take_lines(100).1, 0);
    }

    #[test]
    fn rewind_resends_the_partly_written_line_whole() {
        let mut b = Backlog::new(10, 1 << 20);
        b.push(one(1));
        b.push(one(2));
        let c = b.pending(100, notice).concat().len();
        assert_eq!(c, 20);
        assert_eq!(b.consume(13), 1);
        assert_eq!(b.rewind(), 0);
        assert_eq!(b.rewind(), 0, "nothing more to rewind");
        assert_eq!(write_all(&mut b), ("line 0002\n".to_string(), 1));
    }

    #[test]
    fn a_notice_cut_by_a_lost_connection_is_made_again_with_the_new_count() {
        let mut b = notice_due();
        b.consume(3);
        // Disconnected: the notice is abandoned, more lines are dropped.
        b.rewind();
        assert_eq!(b.push(one(3)), 1);
        assert_eq!(write_all(&mut b), ("lost 2\nline 0003\n".to_string(), 1));
    }

    #[test]
    fn drops_while_a_notice_is_in_flight_are_reported_next() {
        let mut b = notice_due();
        b.consume(2);
        b.push(one(3));
        b.consume(5);
        assert_eq!(write_all(&mut b), ("lost 1\nline 0003\n".to_string(), 1));
    }

    #[test]
    fn a_rewound_line_that_no_longer_fits_is_dropped() {
        let mut b = Backlog::new(1, 1 << 20);
        b.push(one(1));
        b.chunk(100, notice);
        b.consume(4);
        b.push(one(2));
        assert_eq!(b.rewind(), 1);
        assert_eq!(write_all(&mut b), ("lost 1\nline 0002\n".to_string(), 1));
    }

    #[test]
    fn chunks_follow_the_queue_through_many_partial_writes() {
        let mut b = Backlog::new(100, 1 << 20);
        let mut expect = String::new();
        for round in 0..50u32 {
            b.push(batch(round * 7..=round * 7 + 6));
            for i in 0..7 {
                expect.push_str(&format!("line {:04}\n", round * 7 + i));
            }
            let mut out = Vec::new();
            for _ in 0..3 {
                let c = b.chunk(13, notice).to_vec();
                out.extend_from_slice(&c);
                b.consume(c.len());
            }
            let (rest, _) = write_all(&mut b);
            out.extend_from_slice(rest.as_bytes());
            let want = std::mem::take(&mut expect);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    #[test]
    fn discard_counts_record_lines_only() {
        let mut b = Backlog::new(2, 1 << 20);
        for i in 0..4 {
            b.push(one(i));
        }
        assert_eq!(b.discard(), 2);
        assert!(b.is_idle());
    }
}
