//! Parsing a process's own /proc files (`/proc/<pid>/status`, `/proc/<pid>/stat`):
//! what seeding the process cache needs of a process older than netta. The text
//! is the kernel's, but a process name inside it is chosen by the process, so
//! nothing here trusts a line to have any shape.

/// What `/proc/<pid>/status` says of a process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// The thread group (process) id: a thread's status names its process.
    pub tgid: u32,
    pub ppid: u32,
    /// Real user id.
    pub uid: u32,
}

fn number(v: &str) -> Option<u32> {
    v.split_whitespace().next()?.parse().ok()
}

/// Reads `Tgid:`, `PPid:` and `Uid:` (its first, real, id); `None` if one is missing.
pub fn parse_status(text: &[u8]) -> Option<Status> {
    let (mut tgid, mut ppid, mut uid) = (None, None, None);
    for line in text.split(|b| *b == b'\n') {
        // Only the keys' lines need be text; `Name:` may hold any bytes.
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        if let Some(v) = line.strip_prefix("Tgid:") {
            tgid = number(v);
        } else if let Some(v) = line.strip_prefix("PPid:") {
            ppid = number(v);
        } else if let Some(v) = line.strip_prefix("Uid:") {
            uid = number(v);
        }
    }
    Some(Status {
        tgid: tgid?,
        ppid: ppid?,
        uid: uid?,
    })
}

/// The start time in `/proc/<pid>/stat` (field 22, clock ticks since boot). The
/// name (field 2) is in parentheses and may hold any byte, `)` and spaces too:
/// the fields after it start after the last `)`.
pub fn parse_stat_start(text: &[u8]) -> Option<u64> {
    let close = text.iter().rposition(|b| *b == b')')?;
    let rest = std::str::from_utf8(text.get(close + 1..)?).ok()?;
    // After the name: state is field 3, so start (22) is the 20th.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_gives_the_process_parent_and_user() {
        let text = b"Name:\tevil\xff)\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\nNgid:\t0\nPid:\t4243\nPPid:\t1\nTracerPid:\t0\nUid:\t1000\t1001\t1002\t1003\nGid:\t100\t100\t100\t100\n";
        assert_eq!(
            parse_status(text),
            Some(Status {
                tgid: 4242,
                ppid: 1,
                uid: 1000
            })
        );
        assert_eq!(parse_status(b"Tgid:\t1\nPPid:\t0\n"), None, "no Uid");
        assert_eq!(parse_status(b"Tgid:\tx\nPPid:\t0\nUid:\t0\n"), None);
        assert_eq!(parse_status(b""), None);
    }

    #[test]
    fn stat_start_is_found_past_a_hostile_name() {
        let stat = b"4242 (a) b (c) d) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 12345678 100 18446744073709551615";
        assert_eq!(parse_stat_start(stat), Some(987_654));
        assert_eq!(parse_stat_start(b"1 (init) S 0"), None);
        assert_eq!(parse_stat_start(b"no parens at all"), None);
        assert_eq!(parse_stat_start(b""), None);
    }
}
