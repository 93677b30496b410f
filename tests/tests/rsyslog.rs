//! The TCP sink against a real rsyslog (Debian's rsyslogd, imtcp → omfile, from
//! packaging/rsyslog/netta.conf), across an rsyslog restart.
//!
//! Plain TCP has no application-level acknowledgement: lines the kernel took for
//! an rsyslogd that then stopped are gone without anyone knowing. So the test
//! holds the sink to what it can promise: every line written is whole and valid
//! ECS, none twice, delivery resumes after the restart, and nothing is lost
//! while rsyslog is simply away.
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use netta::api::sink::SinkSpec;
use netta_tests::require_server;
use netta_tests::servers::Rsyslog;

#[path = "support/sink_under_test.rs"]
mod sink_under_test;
use sink_under_test::{off_runtime, opened, start_sink, stop_sink};

fn ids(r: &Rsyslog) -> Vec<u16> {
    r.lines()
        .iter()
        .map(|l| netta_tests::parse_event_line(l))
        .filter(|v| v["event"]["action"] == "connection-opened")
        .map(|v| v["source"]["port"].as_u64().unwrap() as u16)
        .collect()
}

async fn wait_ids(r: &Rsyslog, want: impl Fn(&[u16]) -> bool) -> Vec<u16> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = ids(r);
        if want(&got) || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_sink_feeds_rsyslog_across_a_restart() {
    require_server!("rsyslog", "rsyslogd", "rsyslog");
    let mut rs = Rsyslog::start("restart");
    let spec: SinkSpec = format!("tcp://127.0.0.1:{}", rs.port).parse().unwrap();
    let (tx, stats, stop, task, mut maker) = start_sink(spec, 4096);
    for id in 1..=500 {
        tx.send(maker.line(&opened(id))).await.unwrap();
    }
    let first = wait_ids(&rs, |g| g.len() >= 500).await;
    assert_eq!(first.len(), 500, "before the restart");
    // rsyslog goes away; lines sent meanwhile wait in the sink's buffer.
    rs = off_runtime(rs, |x| x.stop()).await;
    for id in 501..=1000 {
        tx.send(maker.line(&opened(id))).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    rs = off_runtime(rs, |x| x.run()).await;
    for id in 1001..=1500 {
        tx.send(maker.line(&opened(id))).await.unwrap();
    }
    let got = wait_ids(&rs, |g| g.contains(&1500)).await;
    stop_sink(stop, task).await;
    let unique: HashSet<u16> = got.iter().copied().collect();
    assert_eq!(unique.len(), got.len(), "no line twice");
    assert!(stats.reconnects.load(Ordering::Relaxed) >= 1);
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
    // Lines sent while rsyslog was down and after it came back all arrived.
    let missing: Vec<u16> = (501..=1500).filter(|id| !unique.contains(id)).collect();
    assert!(missing.is_empty(), "missing after the restart: {missing:?}");
}
