//! The bounded queue of lines waiting for a destination.
use std::collections::VecDeque;

/// A line partly written, or the `events-lost` notice being written.
#[derive(Debug)]
pub(super) struct Current {
    pub(super) line: Vec<u8>,
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
    pub(super) bytes: VecDeque<u8>,
    pub(super) lens: VecDeque<usize>,
    pub(super) max_lines: usize,
    pub(super) max_bytes: usize,
    /// Lines dropped and not yet reported by a written notice.
    pub(super) unreported: u64,
    pub(super) cur: Option<Current>,
}

impl Backlog {
    pub(super) fn new(max_lines: usize, max_bytes: usize) -> Backlog {
        Backlog {
            bytes: VecDeque::new(),
            lens: VecDeque::new(),
            max_lines: max_lines.max(1),
            max_bytes,
            unreported: 0,
            cur: None,
        }
    }

    /// Nothing to write: no line and no notice.
    pub(super) fn is_idle(&self) -> bool {
        self.cur.is_none() && self.lens.is_empty() && self.unreported == 0
    }

    /// Record lines waiting (the one partly written included).
    pub(super) fn lines(&self) -> usize {
        self.lens.len() + usize::from(self.cur.as_ref().is_some_and(|c| c.lost == 0))
    }

    pub(super) fn fits(&self, len: usize) -> bool {
        self.lens.len() < self.max_lines && self.bytes.len() + len <= self.max_bytes
    }

    /// Queues one line (with its newline), dropping the oldest to make room;
    /// returns how many lines were dropped.
    pub(super) fn push(&mut self, line: &[u8]) -> u64 {
        if line.len() > self.max_bytes {
            self.unreported += 1;
            return 1;
        }
        let mut dropped = 0;
        let mut drop_bytes = 0;
        while !(self.lens.len() < self.max_lines
            && self.bytes.len() - drop_bytes + line.len() <= self.max_bytes)
        {
            let Some(len) = self.lens.pop_front() else {
                break;
            };
            drop_bytes += len;
            dropped += 1;
        }
        self.bytes.drain(..drop_bytes);
        self.bytes.extend(line);
        self.lens.push_back(line.len());
        self.unreported += dropped;
        dropped
    }

    /// The next bytes to write: the rest of the current line, else a notice of the
    /// dropped lines (made by `notice`), else queued lines (at most `max` bytes).
    pub(super) fn chunk(&mut self, max: usize, notice: impl FnOnce(u64) -> Vec<u8>) -> &[u8] {
        if self.cur.is_none() && self.unreported > 0 {
            self.cur = Some(Current {
                line: notice(self.unreported),
                sent: 0,
                lost: self.unreported,
            });
        }
        if let Some(c) = &self.cur {
            return &c.line[c.sent..];
        }
        let front = self.bytes.as_slices().0;
        &front[..front.len().min(max.max(1))]
    }

    /// `n` bytes of the last [`Backlog::chunk`] were written; returns how many record
    /// lines that completed.
    pub(super) fn consume(&mut self, mut n: usize) -> u64 {
        if let Some(c) = &mut self.cur {
            c.sent = (c.sent + n).min(c.line.len());
            if c.sent < c.line.len() {
                return 0;
            }
            let lost = c.lost;
            self.cur = None;
            if lost > 0 {
                self.unreported = self.unreported.saturating_sub(lost);
                return 0;
            }
            return 1;
        }
        let mut done = 0;
        let mut total = 0;
        while let Some(&len) = self.lens.front() {
            if n < len {
                break;
            }
            n -= len;
            total += len;
            done += 1;
            self.lens.pop_front();
        }
        self.bytes.drain(..total);
        if n > 0 {
            // Part of a line went out: keep it whole, apart from the queue, so
            // dropping the oldest cannot cut it.
            if let Some(len) = self.lens.pop_front() {
                let line: Vec<u8> = self.bytes.drain(..len).collect();
                self.cur = Some(Current {
                    line,
                    sent: n.min(len),
                    lost: 0,
                });
            }
        }
        done
    }

    /// The connection was lost: the line partly written goes back to the front to
    /// be sent whole (a notice is simply made again). Returns lines dropped.
    pub(super) fn rewind(&mut self) -> u64 {
        let Some(c) = self.cur.take() else { return 0 };
        if c.lost > 0 {
            return 0;
        }
        if !self.fits(c.line.len()) {
            // It is the oldest line: the one to drop.
            self.unreported += 1;
            return 1;
        }
        for &b in c.line.iter().rev() {
            self.bytes.push_front(b);
        }
        self.lens.push_front(c.line.len());
        0
    }

    /// Empties the backlog; returns the record lines thrown away.
    pub(super) fn discard(&mut self) -> u64 {
        let n = self.lines() as u64;
        self.bytes.clear();
        self.lens.clear();
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

    fn notice(n: u64) -> Vec<u8> {
        format!("lost {n}\n").into_bytes()
    }

    /// A one-line backlog that dropped line 1 for line 2: its next chunk is the
    /// `lost 1` notice.
    fn notice_due() -> Backlog {
        let mut b = Backlog::new(1, 1 << 20);
        b.push(&line(1));
        b.push(&line(2));
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
        let dropped: u64 = (1..=5).map(|i| b.push(&line(i))).sum();
        assert_eq!(dropped, 2);
        assert_eq!(b.lines(), 3);
        let (out, done) = write_all(&mut b);
        assert_eq!(out, "lost 2\nline 0003\nline 0004\nline 0005\n");
        assert_eq!(done, 3);
        assert!(b.is_idle());
        // Reported once.
        b.push(&line(6));
        assert_eq!(write_all(&mut b).0, "line 0006\n");
    }

    #[test]
    fn backlog_drops_the_oldest_lines_past_the_byte_bound() {
        let mut b = Backlog::new(100, 35);
        for i in 1..=3 {
            assert_eq!(b.push(&line(i)), 0);
        }
        // 40 bytes would not fit: the oldest goes.
        assert_eq!(b.push(&line(4)), 1);
        let big = [b'x'; 25];
        // 25 + 30 > 35: two more go, keeping line 4.
        assert_eq!(b.push(&big), 2);
        // Larger than the whole buffer: dropped itself, the others stay.
        assert_eq!(b.push(&[b'y'; 36]), 1);
        assert_eq!(b.lines(), 2);
        let (out, done) = write_all(&mut b);
        assert_eq!(out, format!("lost 4\nline 0004\n{}", "x".repeat(25)));
        assert_eq!(done, 2);
    }

    #[test]
    fn partial_writes_complete_lines_in_order() {
        let mut b = Backlog::new(10, 1 << 20);
        for i in 1..=3 {
            b.push(&line(i));
        }
        // 15 bytes: line 1 whole, half of line 2.
        assert_eq!(b.chunk(15, notice), b"line 0001\nline ");
        assert_eq!(b.consume(15), 1);
        assert_eq!(b.lines(), 2);
        // Dropping the oldest while line 2 is half sent never cuts it.
        let mut small = Backlog::new(1, 1 << 20);
        small.push(&line(1));
        assert_eq!(small.chunk(4, notice), b"line");
        small.consume(4);
        assert_eq!(
            small.push(&line(2)),
            0,
            "the partly written line is not queued"
        );
        assert_eq!(write_all(&mut small).0, " 0001\nline 0002\n");
        // Back to the first backlog: the rest of line 2, then line 3.
        assert_eq!(b.chunk(100, notice), b"0002\n");
        assert_eq!(b.consume(3), 0);
        assert_eq!(b.consume(2), 1);
        assert_eq!(write_all(&mut b), ("line 0003\n".to_string(), 1));
    }

    #[test]
    fn rewind_resends_the_partly_written_line_whole() {
        let mut b = Backlog::new(10, 1 << 20);
        b.push(&line(1));
        b.push(&line(2));
        let c = b.chunk(100, notice).len();
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
        assert_eq!(b.push(&line(3)), 1);
        assert_eq!(write_all(&mut b), ("lost 2\nline 0003\n".to_string(), 1));
    }

    #[test]
    fn drops_while_a_notice_is_in_flight_are_reported_next() {
        let mut b = notice_due();
        b.consume(2);
        b.push(&line(3));
        b.consume(5);
        assert_eq!(write_all(&mut b), ("lost 1\nline 0003\n".to_string(), 1));
    }

    #[test]
    fn a_rewound_line_that_no_longer_fits_is_dropped() {
        let mut b = Backlog::new(1, 1 << 20);
        b.push(&line(1));
        b.chunk(100, notice);
        b.consume(4);
        b.push(&line(2));
        assert_eq!(b.rewind(), 1);
        assert_eq!(write_all(&mut b), ("lost 1\nline 0002\n".to_string(), 1));
    }

    #[test]
    fn chunks_follow_the_ring_across_its_wrap() {
        let mut b = Backlog::new(100, 1 << 20);
        let mut expect = String::new();
        // Push and write in turns so the ring's start moves around.
        for round in 0..50u32 {
            for i in 0..7 {
                b.push(&line(round * 7 + i));
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
            b.push(&line(i));
        }
        assert_eq!(b.discard(), 2);
        assert!(b.is_idle());
    }
}
