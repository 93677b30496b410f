//! Writing a report file (`netta export`) safely: the report is written to a
//! private temporary file next to the target, synced, then moved into place, so a
//! crash or a full disk never leaves a half-written report behind. An existing file
//! is only replaced with `--force`; without it the move is a no-clobber link, which
//! fails atomically if the name was taken meanwhile.
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{json, Value};

use crate::core::clock::Clock;
use crate::core::table::Snapshot;
use crate::render::{csv, ecs as json};
use crate::settings::cli::ReportFormat;

/// Report files hold process names and peers: readable by their owner only.
const MODE: u32 = 0o600;

/// `network_analysis_YYYYMMDD_HHMMSS.csv` (or `.json`), UTC, as the original names
/// its reports.
pub fn default_file_name(now: SystemTime, format: ReportFormat) -> String {
    // "2024-10-15T14:30:25Z" -> "20241015143025"
    let digits: String = csv::utc_seconds(now)
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    format!(
        "network_analysis_{}_{}.{}",
        &digits[..8],
        &digits[8..14],
        format.extension()
    )
}

/// Paths are shown escaped: they may come from anywhere.
fn show(path: &Path) -> String {
    crate::core::sanitize::escape(path.as_os_str().as_bytes())
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{} already exists (use --force to overwrite)", show(.0))]
    Exists(PathBuf),
    #[error("{} is a directory", show(.0))]
    IsDirectory(PathBuf),
    /// The OS error is part of the message (not a `source`), so `{:#}` shows it once.
    #[error("cannot write {}: {error}", show(path))]
    Write { path: PathBuf, error: io::Error },
}

/// The report's bytes.
pub fn render(
    format: ReportFormat,
    snap: &Snapshot,
    history: bool,
    clock: &Clock,
    now: SystemTime,
) -> Vec<u8> {
    let mut out = Vec::new();
    match format {
        ReportFormat::Csv => {
            let rows = if history {
                csv::rows_history(snap, clock)
            } else {
                csv::rows_live(snap, clock)
            };
            // Writing into a Vec cannot fail.
            let _ = csv::write_csv(&mut out, &rows, now);
        }
        ReportFormat::Json => {
            let rows: Vec<Value> = if history {
                snap.history
                    .iter()
                    .map(|h| json::closed_value(h, clock))
                    .collect()
            } else {
                snap.conns
                    .iter()
                    .map(|c| json::conn_value(c, clock))
                    .collect()
            };
            let doc = json!({ "generated": csv::utc_seconds(now), "connections": rows });
            // Serialising a Value into a Vec cannot fail.
            let _ = serde_json::to_writer_pretty(&mut out, &doc);
            out.push(b'\n');
        }
    }
    out
}

/// Writes the report for `snap` (its history with `history`) to `path`.
pub fn write_report(
    path: &Path,
    force: bool,
    format: ReportFormat,
    snap: &Snapshot,
    history: bool,
    clock: &Clock,
    now: SystemTime,
) -> Result<(), ReportError> {
    write_bytes(path, force, &render(format, snap, history, clock, now))
}

/// Writes `body` to `path` atomically, with mode 0600, never replacing an existing
/// file unless `force`.
pub fn write_bytes(path: &Path, force: bool, body: &[u8]) -> Result<(), ReportError> {
    let fail = |error: io::Error| ReportError::Write {
        path: path.to_path_buf(),
        error,
    };
    let name = path.file_name().ok_or_else(|| {
        fail(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file name",
        ))
    })?;
    // Early, friendly answers; the final move re-checks atomically.
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => return Err(ReportError::IsDirectory(path.to_path_buf())),
        Ok(_) if !force => return Err(ReportError::Exists(path.to_path_buf())),
        _ => {}
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };

    let (mut tmp, file) = TempFile::create(dir, name).map_err(fail)?;
    write_synced(file, body).map_err(fail)?;
    if force {
        fs::rename(&tmp.path, path).map_err(fail)?;
        tmp.armed = false;
    } else {
        move_no_clobber(&tmp.path, path).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                ReportError::Exists(path.to_path_buf())
            } else {
                fail(e)
            }
        })?;
        // `tmp` is removed on drop (a no-op if it was renamed).
    }
    // Make the new name durable too; the data already is.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn write_synced(mut file: File, body: &[u8]) -> io::Result<()> {
    // Exactly 0600, whatever the umask.
    file.set_permissions(Permissions::from_mode(MODE))?;
    file.write_all(body)?;
    file.sync_all()
}

/// A temporary file that is removed when dropped, unless disarmed.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    /// Creates `.NAME.tmp.<pid>` in `dir`, exclusively (never follows or reuses an
    /// existing file or symlink), mode 0600.
    fn create(dir: &Path, name: &OsStr) -> io::Result<(TempFile, File)> {
        let pid = std::process::id();
        for n in 0..100u32 {
            let mut tmp_name = OsString::from(".");
            tmp_name.push(name);
            tmp_name.push(format!(".tmp.{pid}"));
            if n > 0 {
                tmp_name.push(format!(".{n}"));
            }
            let path = dir.join(tmp_name);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(MODE)
                .open(&path)
            {
                Ok(f) => return Ok((TempFile { path, armed: true }, f)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "no free temporary file name",
        ))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Gives `from`'s file the name `to`, failing with `AlreadyExists` if `to` exists.
/// A hard link is atomic and never replaces; file systems without hard links get
/// `renameat2(RENAME_NOREPLACE)` instead.
fn move_no_clobber(from: &Path, to: &Path) -> io::Result<()> {
    match fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        Err(link_err) => match rename_noreplace(from, to) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
                Err(link_err)
            }
            Err(e) => Err(e),
        },
    }
}

fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let from = std::ffi::CString::new(from.as_os_str().as_bytes())?;
    let to = std::ffi::CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: two NUL-terminated paths that outlive the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;
    use std::time::{Duration, UNIX_EPOCH};

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_729_002_625) // 2024-10-15T14:30:25Z
    }

    fn write(path: &Path, force: bool, format: ReportFormat) -> Result<(), ReportError> {
        let snap = fixture::snapshot();
        write_report(path, force, format, &snap, false, &fixture::clock(), now())
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// Names in `dir`, so tests can see that no temporary file was left.
    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn default_file_name_is_utc_stamped() {
        assert_eq!(
            default_file_name(now(), ReportFormat::Csv),
            "network_analysis_20241015_143025.csv"
        );
        assert_eq!(
            default_file_name(UNIX_EPOCH, ReportFormat::Json),
            "network_analysis_19700101_000000.json"
        );
    }

    /// A file already at `dir/name`.
    fn existing(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn creates_a_private_csv_report() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.csv");
        write(&path, false, ReportFormat::Csv).unwrap();
        assert_eq!(mode(&path), 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# Network Traffic Analysis Report\n# Generated: "));
        assert!(text.contains("\nTCP,127.0.0.1,8080,0.0.0.0,*,LISTENING,1234,web-server,"));
        assert_eq!(entries(dir.path()), ["report.csv"]);
    }

    #[test]
    fn refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = existing(dir.path(), "report.csv", "keep me");
        let err = write(&path, false, ReportFormat::Csv).unwrap_err();
        assert!(matches!(err, ReportError::Exists(_)), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&*path.to_string_lossy()), "{msg}");
        assert!(
            msg.ends_with("already exists (use --force to overwrite)"),
            "{msg}"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "keep me");
        assert_eq!(entries(dir.path()), ["report.csv"]);

        // A dangling symlink is taken too, and is not followed.
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink(dir.path().join("target.csv"), &link).unwrap();
        assert!(matches!(
            write(&link, false, ReportFormat::Csv),
            Err(ReportError::Exists(_))
        ));
        assert!(!dir.path().join("target.csv").exists());
    }

    #[test]
    fn no_clobber_move_is_atomic() {
        // The name gets taken between the early check and the final move.
        let dir = tempfile::tempdir().unwrap();
        let (tmp, file) = TempFile::create(dir.path(), OsStr::new("r.csv")).unwrap();
        write_synced(file, b"new").unwrap();
        let path = dir.path().join("r.csv");
        fs::write(&path, "old").unwrap();
        let err = move_no_clobber(&tmp.path, &path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
        assert!(rename_noreplace(&tmp.path, &path).is_err());
        drop(tmp);
        assert_eq!(entries(dir.path()), ["r.csv"]);
    }

    #[test]
    fn overwrites_with_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = existing(dir.path(), "report.json", "old");
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        write(&path, true, ReportFormat::Json).unwrap();
        assert_eq!(mode(&path), 0o600);
        let v: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["generated"], "2024-10-15T14:30:25Z");
        let conns = v["connections"].as_array().unwrap();
        assert_eq!(conns.len(), fixture::snapshot().conns.len());
        assert_eq!(conns[0]["process"], "web-server");
        assert_eq!(entries(dir.path()), ["report.json"]);
    }

    #[test]
    fn json_history_uses_closed_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.json");
        let snap = fixture::snapshot();
        write_report(
            &path,
            false,
            ReportFormat::Json,
            &snap,
            true,
            &fixture::clock(),
            now(),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        let states: Vec<&str> = v["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["state"].as_str().unwrap())
            .collect();
        assert_eq!(states, ["CLOSED", "FAILED"]);
        let csv_text = render(ReportFormat::Csv, &snap, true, &fixture::clock(), now());
        let csv_text = String::from_utf8(csv_text).unwrap();
        assert!(csv_text.contains(",CLOSED,") && csv_text.contains(",FAILED,"));
    }

    #[test]
    fn unwritable_paths_fail_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir").join("x.csv");
        let err = write(&missing, false, ReportFormat::Csv).unwrap_err();
        assert!(matches!(err, ReportError::Write { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("cannot write {}: ", missing.display())),
            "{msg}"
        );
        assert!(entries(dir.path()).is_empty());

        let proc_path = Path::new("/proc/nonexistent/x.csv");
        let msg = write(proc_path, true, ReportFormat::Csv)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("/proc/nonexistent/x.csv"), "{msg}");

        let err = write(dir.path(), true, ReportFormat::Csv).unwrap_err();
        assert!(matches!(err, ReportError::IsDirectory(_)), "{err:?}");
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn failed_move_removes_the_temp_file() {
        // "x.csv/" passes the early checks, gets a temp file written in `dir`, and
        // then cannot be the name of a regular file.
        let dir = tempfile::tempdir().unwrap();
        let mut bad = dir.path().join("x.csv").into_os_string();
        bad.push("/");
        let bad = PathBuf::from(bad);
        for force in [false, true] {
            let err = write(&bad, force, ReportFormat::Csv).unwrap_err();
            assert!(matches!(err, ReportError::Write { .. }), "{err:?}");
            assert!(err.to_string().contains("x.csv"), "{err}");
            assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
        }
    }

    #[test]
    fn hostile_paths_are_shown_escaped() {
        let err = ReportError::Exists(PathBuf::from("/tmp/a\x1b[2Jb.csv"));
        assert_eq!(
            err.to_string(),
            "/tmp/a\\e[2Jb.csv already exists (use --force to overwrite)"
        );
    }
}
