//! A real Prometheus (Debian's `prometheus`, started here with a private config
//! and data dir on free ports) scrapes `netta agent`, and netta's series come
//! back through Prometheus's HTTP API.
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netta_tests::servers::{http, private_dir};
use netta_tests::*;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// The value of the first series `query` returns, once Prometheus has one.
fn query(prom: &str, q: &str, timeout: Duration) -> Option<(String, f64)> {
    let deadline = Instant::now() + timeout;
    let path = format!(
        "/api/v1/query?query={}",
        q.replace('{', "%7B")
            .replace('}', "%7D")
            .replace('"', "%22")
            .replace('=', "%3D")
    );
    while Instant::now() < deadline {
        if let Ok((200, body)) = http(prom, "GET", &path, b"") {
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if let Some(first) = v["data"]["result"].as_array().and_then(|r| r.first()) {
                let value = first["value"][1].as_str().and_then(|s| s.parse().ok());
                if let Some(value) = value {
                    return Some((first["metric"].to_string(), value));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    None
}

#[test]
fn prometheus_scrapes_netta_and_answers_a_netta_query() {
    require_server!("prometheus", "prometheus", "prometheus");
    let dir = private_dir("prometheus");
    let metrics = format!("127.0.0.1:{}", free_tcp_port("127.0.0.1"));
    let prom = format!("127.0.0.1:{}", free_tcp_port("127.0.0.1"));
    let _netta = Killed(
        netta_cmd()
            // No store: the machine's /var/lib/netta is not this test's.
            .args(["agent", "--no-store", "--metrics", &metrics])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start netta agent"),
    );
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: netta\n    static_configs:\n      - targets: ['{metrics}']\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let _prom = Killed(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={prom}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
    );
    let up = query(&prom, r#"up{job="netta"}"#, Duration::from_secs(60));
    let logs = || std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
    assert_eq!(
        up.as_ref().map(|u| u.1),
        Some(1.0),
        "target not up: {up:?}\n{}",
        logs()
    );
    let (labels, v) = query(&prom, r#"netta_info{job="netta"}"#, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no netta_info series\n{}", logs()));
    assert_eq!(v, 1.0);
    assert!(labels.contains(env!("CARGO_PKG_VERSION")), "{labels}");
    let (_, rss) = query(
        &prom,
        r#"process_resident_memory_bytes{job="netta"}"#,
        Duration::from_secs(30),
    )
    .expect("standard process series");
    assert!(rss > 1e6, "{rss}");
    assert!(
        query(&prom, "netta_up", Duration::from_secs(2)).is_none(),
        "netta_up is gone"
    );
    drop(_prom);
    let _ = std::fs::remove_dir_all(&dir);
}
