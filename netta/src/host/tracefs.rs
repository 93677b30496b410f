//! tracefs: mounted on demand (a fresh machine has it unmounted, and aya's
//! tracepoint attach then fails), and read to check that each tracepoint still has
//! the field layout the kernel program was written for.
use std::io::BufRead;
use std::path::{Path, PathBuf};

pub const TRACEFS: &str = "/sys/kernel/tracing";
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

const TRACEFS_MAGIC: i64 = 0x7472_6163;

fn is_tracefs(path: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(path) else {
        return false;
    };
    // SAFETY: valid C string and an out-struct we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == TRACEFS_MAGIC }
}

/// Returns the tracefs root, mounting it at /sys/kernel/tracing when it is missing.
pub fn ensure_mounted() -> Result<PathBuf, String> {
    for root in [TRACEFS, DEBUGFS_TRACING] {
        if Path::new(root).join("events").is_dir() {
            return Ok(PathBuf::from(root));
        }
        if is_tracefs(root) {
            return Err(format!(
                "tracefs at {root} is not readable by this user (run as root, or grant CAP_DAC_READ_SEARCH)"
            ));
        }
    }
    if let Err(err) = super::mount_pseudo_fs("tracefs", TRACEFS) {
        return Err(format!(
            "tracefs is not mounted and mounting it at {TRACEFS} failed ({err}); run `mount -t tracefs tracefs {TRACEFS}` as root"
        ));
    }
    log::info!("mounted tracefs at {TRACEFS}");
    Ok(PathBuf::from(TRACEFS))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub offset: usize,
    pub size: usize,
}

/// Parses the `field:` lines of a tracepoint `format` file.
pub fn parse_format<R: BufRead>(reader: R) -> Result<Vec<Field>, String> {
    let mut fields = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format!("line {}: {e}", n + 1))?;
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        let mut decl = None;
        let mut offset = None;
        let mut size = None;
        for part in rest.split(';').map(str::trim) {
            if let Some(v) = part.strip_prefix("offset:") {
                offset = v.parse::<usize>().ok();
            } else if let Some(v) = part.strip_prefix("size:") {
                size = v.parse::<usize>().ok();
            } else if decl.is_none() && !part.is_empty() && !part.contains(':') {
                decl = Some(part);
            }
        }
        let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) else {
            return Err(format!("line {}: cannot read field `{line}`", n + 1));
        };
        let name = decl
            .rsplit([' ', '*'])
            .next()
            .unwrap_or(decl)
            .split('[')
            .next()
            .unwrap_or("")
            .to_string();
        fields.push(Field { name, offset, size });
    }
    if fields.is_empty() {
        return Err("no fields".into());
    }
    Ok(fields)
}

/// Checks a tracepoint's fields against the offsets the kernel program reads.
pub fn check_layout(
    root: &Path,
    tp: (&str, &str),
    expected: &[(&str, usize, usize)],
) -> Result<(), String> {
    let path = root.join("events").join(tp.0).join(tp.1).join("format");
    let file = std::fs::File::open(&path)
        .map_err(|e| format!("tracepoint {}:{} is not available ({e})", tp.0, tp.1))?;
    let fields = parse_format(std::io::BufReader::new(file))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    compare(tp, &fields, expected)
}

pub fn compare(
    tp: (&str, &str),
    fields: &[Field],
    expected: &[(&str, usize, usize)],
) -> Result<(), String> {
    for (name, offset, size) in expected {
        match fields.iter().find(|f| f.name == *name) {
            Some(f) if f.offset == *offset && f.size == *size => {}
            Some(f) => {
                return Err(format!(
                    "tracepoint {}:{} field `{name}` is at offset {} size {}, expected {offset}/{size}: unsupported kernel layout",
                    tp.0, tp.1, f.offset, f.size
                ))
            }
            None => {
                return Err(format!(
                    "tracepoint {}:{} has no field `{name}`: unsupported kernel layout",
                    tp.0, tp.1
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SET_STATE: &str = "name: inet_sock_set_state
ID: 1234
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;
\tfield:int newstate;\toffset:20;\tsize:4;\tsigned:1;
\tfield:__u16 sport;\toffset:24;\tsize:2;\tsigned:0;
\tfield:__u16 dport;\toffset:26;\tsize:2;\tsigned:0;
\tfield:__u16 family;\toffset:28;\tsize:2;\tsigned:0;
\tfield:__u16 protocol;\toffset:30;\tsize:2;\tsigned:0;
\tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;
\tfield:__u8 daddr[4];\toffset:36;\tsize:4;\tsigned:0;
\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:__u8 daddr_v6[16];\toffset:56;\tsize:16;\tsigned:0;

print fmt: \"family=%s\", REC->family
";

    /// `format` (a tracefs format file) against the program's `inet_sock_set_state` layout.
    fn check_set_state(format: &str) -> Result<(), String> {
        let fields = parse_format(format.as_bytes()).unwrap();
        compare(
            netta_ebpf::tp::SET_STATE,
            &fields,
            netta_ebpf::tp::SET_STATE_FIELDS,
        )
    }

    #[test]
    fn this_kernels_layout_matches_the_program() {
        let fields = parse_format(SET_STATE.as_bytes()).unwrap();
        assert_eq!(fields[1].name, "skaddr");
        assert_eq!(fields[8].name, "saddr");
        check_set_state(SET_STATE).unwrap();
    }

    #[test]
    fn a_moved_field_is_refused_with_a_reason() {
        let moved = SET_STATE.replace("offset:28;", "offset:44;");
        let err = check_set_state(&moved).unwrap_err();
        assert!(err.contains("`family` is at offset 44"), "{err}");
        let missing = SET_STATE.replace("protocol", "proto");
        let err = check_set_state(&missing).unwrap_err();
        assert!(err.contains("no field `protocol`"), "{err}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_format("field:int x;\toffset:zz;".as_bytes()).is_err());
        assert!(parse_format("".as_bytes()).is_err());
        assert!(parse_format(&b"\xff\xfe"[..]).is_err());
    }
}
