//! The HTTP sink against a real ClickHouse (Debian's clickhouse-server, started
//! here with the shipped config and DDL from packaging/clickhouse/): every record
//! arrives exactly once across a server restart, and beyond the sink's buffer
//! the `events-lost` counts equal what is missing.
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use netta::api::sink::{self, SinkSpec, SinkStats};
use netta_tests::require_server;
use netta_tests::servers::ClickHouse;
use tokio::sync::mpsc;

#[path = "support/sink_under_test.rs"]
mod sink_under_test;
use sink_under_test::{off_runtime, opened, start_sink, stop_sink};

async fn send(
    maker: &mut sink::LineMaker,
    tx: &mpsc::Sender<sink::Chunk>,
    ids: std::ops::RangeInclusive<u16>,
) {
    for id in ids {
        tx.send(maker.line(&opened(id)))
            .await
            .expect("sink stopped");
    }
}

/// (distinct ids received, ids received more than once, sum of reported losses).
fn tally(ch: &ClickHouse) -> (u64, u64, u64) {
    let q = |sql: &str| -> u64 {
        let out = ch.query(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{sql}: {out:?}"))
    };
    let distinct = q("SELECT uniqExact(`source.port`) FROM netta.events \
                      WHERE `event.action` = 'connection-opened'");
    let dups = q(
        "SELECT count() FROM (SELECT `source.port` FROM netta.events \
                  WHERE `event.action` = 'connection-opened' \
                  GROUP BY `source.port` HAVING count() > 1)",
    );
    let lost = q("SELECT sum(`netta.lost`) FROM netta.events WHERE `event.action` = 'events-lost'");
    (distinct, dups, lost)
}

async fn wait_written(stats: &SinkStats, n: u64) {
    // Generous: a ClickHouse restart on two busy shared cores takes long.
    let deadline = Instant::now() + Duration::from_secs(180);
    while stats.written.load(Ordering::Relaxed) < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} delivered",
            stats.written.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sink_delivers_exactly_once_across_a_clickhouse_restart() {
    require_server!("clickhouse", "clickhouse-server", "clickhouse-server");
    let mut ch = ClickHouse::start("restart");
    let spec: SinkSpec = format!("{}#gzip,age=100ms", ch.sink_url()).parse().unwrap();
    let (tx, stats, stop, task, mut maker) = start_sink(spec, 4096);
    send(&mut maker, &tx, 1..=1000).await;
    wait_written(&stats, 1000).await;
    // Restart mid-stream: lines sent while it is down wait and go out after.
    let restart = tokio::task::spawn_blocking(move || {
        ch.restart();
        ch
    });
    // Lines keep coming before, during and after the outage.
    let mut next = 1001u16;
    while !restart.is_finished() && next < 9000 {
        send(&mut maker, &tx, next..=next + 9).await;
        next += 10;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    send(&mut maker, &tx, next..=next + 499).await;
    let total = u64::from(next) + 499;
    let ch = restart.await.unwrap();
    wait_written(&stats, total).await;
    stop_sink(stop, task).await;
    assert!(
        stats.reconnects.load(Ordering::Relaxed) >= 1,
        "the restart was seen"
    );
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
    assert_eq!(
        tally(&ch),
        (total, 0, 0),
        "(received, duplicated, reported lost)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_its_buffer_the_reported_losses_equal_what_is_missing() {
    require_server!("clickhouse", "clickhouse-server", "clickhouse-server");
    let mut ch = ClickHouse::start("overflow");
    let (spec, mut opts) = sink::parse_sink(&ch.sink_url()).unwrap();
    opts.buffer_lines = 100;
    opts.max_age = Duration::from_millis(50);
    let (tx, stats, stop, task, mut maker) = start_sink(SinkSpec::Http(spec, opts), 64);
    send(&mut maker, &tx, 1..=50).await;
    wait_written(&stats, 50).await;
    ch = off_runtime(ch, |x| x.stop()).await;
    send(&mut maker, &tx, 51..=550).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ch = off_runtime(ch, |x| x.run()).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while stats.written.load(Ordering::Relaxed) + stats.dropped.load(Ordering::Relaxed) < 550 {
        assert!(Instant::now() < deadline, "sink stuck: {stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_sink(stop, task).await;
    let (received, dups, lost) = tally(&ch);
    assert_eq!(dups, 0);
    assert!(lost > 0, "500 lines into a 100-line buffer lost some");
    assert_eq!(
        received + lost,
        550,
        "received {received}, reported lost {lost}"
    );
    assert_eq!(lost, stats.dropped.load(Ordering::Relaxed));
}
