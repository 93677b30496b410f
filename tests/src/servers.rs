//! Real servers for the end-to-end tests (ClickHouse, rsyslog, Prometheus), each
//! started by the test with a private config, private directories and free
//! ports, and stopped when dropped. In CI a missing server is a failure.
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_tcp_port, have_tool};

/// True when `prog` is installed; when it is not and the run is required to be
/// complete (`NETTA_REQUIRE_EBPF=1` or `CI`), that is a failure, not a skip.
pub fn server_available(test: &str, prog: &str, package: &str) -> bool {
    if have_tool(prog) || Path::new(prog).exists() {
        return true;
    }
    let required = std::env::var("NETTA_REQUIRE_EBPF").is_ok_and(|v| v == "1")
        || std::env::var_os("CI").is_some();
    assert!(
        !required,
        "{test}: {prog} required but missing (apt-get install {package})"
    );
    eprintln!("SKIP {test}: {prog} missing (apt-get install {package})");
    false
}

/// Returns from the test when `prog` is missing (a failure instead, when the run
/// must be complete): `require_server!("test", "prog", "package")`.
#[macro_export]
macro_rules! require_server {
    ($test:expr, $prog:expr, $package:expr) => {
        if !$crate::servers::server_available($test, $prog, $package) {
            return;
        }
    };
}

/// Starts a server with no stdin and its output in `log`.
fn spawn_logged(mut cmd: Command, log: &Path) -> std::process::Child {
    let log = std::fs::File::create(log).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("start {:?}: {e}", cmd.get_program()))
}

/// A fresh private directory under the system temp dir.
pub fn private_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "netta-pipeline-{name}-{}-{}",
        std::process::id(),
        crate::free_tcp_port("127.0.0.1")
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("private dir");
    d
}

fn repo_file(rel: &str) -> String {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../").to_string() + rel;
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// One HTTP/1.0 request; returns (status, body).
pub fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let text = String::from_utf8_lossy(&resp).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "{what} not up after {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop_child(child: &mut Child) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A private ClickHouse server with netta's table (packaging/clickhouse/).
pub struct ClickHouse {
    dir: PathBuf,
    pub http_addr: String,
    child: Option<Child>,
}

pub const CLICKHOUSE: &str = "/usr/sbin/clickhouse-server";

impl ClickHouse {
    pub fn start(name: &str) -> ClickHouse {
        let dir = private_dir(&format!("clickhouse-{name}"));
        let http_port = free_tcp_port("127.0.0.1");
        let tcp_port = free_tcp_port("127.0.0.1");
        let config = repo_file("packaging/clickhouse/config.xml")
            .replace("@HTTP_PORT@", &http_port.to_string())
            .replace("@TCP_PORT@", &tcp_port.to_string())
            .replace("@DIR@", &dir.display().to_string());
        std::fs::write(dir.join("config.xml"), config).unwrap();
        std::fs::write(
            dir.join("users.xml"),
            repo_file("packaging/clickhouse/users.xml"),
        )
        .unwrap();
        let mut ch = ClickHouse {
            dir,
            http_addr: format!("127.0.0.1:{http_port}"),
            child: None,
        };
        ch.run();
        for stmt in repo_file("packaging/clickhouse/netta.sql")
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n")
            .split(';')
            .filter(|s| !s.trim().is_empty())
        {
            let out = ch.query(stmt);
            assert!(out.is_ok(), "DDL failed: {out:?}\n{stmt}");
        }
        ch
    }

    /// Starts the (stopped) server again on the same ports and data.
    pub fn run(&mut self) {
        let mut cmd =
            Command::new(crate::servers::which("clickhouse-server").unwrap_or(CLICKHOUSE.into()));
        cmd.arg(format!(
            "--config-file={}",
            self.dir.join("config.xml").display()
        ))
        .current_dir(&self.dir);
        self.child = Some(spawn_logged(cmd, &self.dir.join("server.log")));
        let addr = self.http_addr.clone();
        wait_for("clickhouse", Duration::from_secs(60), || {
            http(&addr, "GET", "/ping", b"").is_ok_and(|(s, _)| s == 200)
        });
    }

    /// Stops the server (SIGTERM, as systemd does) and starts it again.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c);
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Runs one statement; Ok(body) on HTTP 200.
    pub fn query(&self, sql: &str) -> Result<String, String> {
        match http(&self.http_addr, "POST", "/", sql.as_bytes()) {
            Ok((200, b)) => Ok(b),
            Ok((s, b)) => Err(format!("HTTP {s}: {b}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The HTTP sink URL that inserts into netta.events.
    pub fn sink_url(&self) -> String {
        format!(
            "http://{}/?input_format_import_nested_json=1&input_format_skip_unknown_fields=1\
             &query=INSERT%20INTO%20netta.events%20FORMAT%20JSONEachRow",
            self.http_addr
        )
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The full path of `prog` on PATH.
pub fn which(prog: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// A private rsyslogd receiving TCP (imtcp) into a file (omfile), from
/// packaging/rsyslog/netta.conf.
pub struct Rsyslog {
    dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl Rsyslog {
    pub fn start(name: &str) -> Rsyslog {
        let dir = private_dir(&format!("rsyslog-{name}"));
        let port = free_tcp_port("127.0.0.1");
        let conf = repo_file("packaging/rsyslog/netta.conf")
            .replace("@PORT@", &port.to_string())
            .replace("@DIR@", &dir.display().to_string());
        std::fs::write(dir.join("rsyslog.conf"), conf).unwrap();
        let mut r = Rsyslog {
            dir,
            port,
            child: None,
        };
        r.run();
        r
    }

    pub fn run(&mut self) {
        let mut cmd = Command::new(which("rsyslogd").unwrap_or("/usr/sbin/rsyslogd".into()));
        cmd.arg("-n")
            .arg("-f")
            .arg(self.dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"));
        self.child = Some(spawn_logged(cmd, &self.dir.join("rsyslogd.log")));
        let addr = format!("127.0.0.1:{}", self.port);
        wait_for("rsyslogd", Duration::from_secs(30), || {
            TcpStream::connect(&addr).is_ok()
        });
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c);
        }
    }

    /// The lines rsyslog wrote so far.
    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("netta-events.json"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
