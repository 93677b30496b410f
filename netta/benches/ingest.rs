//! Ingest throughput of the user-space hot path: decoding kernel records and
//! applying them to the live table (and the detector), on one core, with no kernel.
//! Run with `cargo bench -p netta --bench ingest` (or `cargo xtask bench`).
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use netta::api::pipeline::{self, BATCH};
use netta::api::process::{Limits as ProcLimits, ProcessCache, Seed};
use netta::api::{ConnEvent, Detector, Limits, Rules, Services, Table};
use netta_ebpf::{Event, Flags, Kind, AF_INET, EVENT_SIZE, IPPROTO_TCP};

/// A loopback workload like `ab` against a local server: for each connection, the
/// client and server sockets each open and close (4 records per connection).
fn records(conns: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(conns as usize * 4 * EVENT_SIZE);
    for i in 0..conns {
        let cport = 32768 + (i % 28000) as u16;
        for (side, flags, sock) in [
            (0, Flags::INITIATOR, 0xffff_8880_0000_0000u64 + i as u64 * 2),
            (1, Flags::ACCEPTED, 0xffff_8880_0000_0001u64 + i as u64 * 2),
        ] {
            for k in [Kind::Opened, Kind::Closed] {
                let mut e = Event::zeroed();
                e.kind = k as u8;
                e.flags = flags;
                e.sock = sock;
                e.family = AF_INET;
                e.protocol = IPPROTO_TCP;
                e.local_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
                e.remote_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
                (e.local_port, e.remote_port) = if side == 0 { (cport, 80) } else { (80, cport) };
                e.pid = 1000 + side;
                e.comm[..2].copy_from_slice(b"ab");
                e.start_ns = 1_000 + i as u64 * 1_000;
                e.ts_ns = e.start_ns + if k == Kind::Closed { 500_000 } else { 10_000 };
                e.bytes_sent = 100;
                e.bytes_recv = 200;
                out.extend_from_slice(e.as_bytes());
            }
        }
    }
    out
}

/// The process cache as the agent has it: both processes known (seeded), so
/// every event's lookup finds its process.
fn procs() -> ProcessCache {
    let mut c = ProcessCache::new(ProcLimits::DEFAULT, "bench", 10_000_000);
    for pid in [1000, 1001] {
        c.seed(&Seed {
            pid,
            ppid: 1,
            start_ns: 0,
            uid: 0,
            cgroup: 0,
            executable: Some(b"/usr/bin/ab".to_vec()),
            args: None,
        });
    }
    c
}

fn ingest(c: &mut Criterion) {
    const CONNS: u32 = 50_000;
    let raw = records(CONNS);
    let n = raw.len() / EVENT_SIZE;
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("decode", |b| {
        b.iter(|| {
            let mut ok = 0usize;
            for rec in raw.chunks_exact(EVENT_SIZE) {
                ok += ConnEvent::decode(rec).is_ok() as usize;
            }
            ok
        })
    });
    g.bench_function("decode+table", |b| {
        b.iter_batched_ref(
            || {
                (
                    Table::new(Limits::default()),
                    Vec::with_capacity(BATCH),
                    procs(),
                )
            },
            |(table, batch, procs)| {
                pipeline::ingest(
                    &raw,
                    EVENT_SIZE,
                    batch,
                    procs,
                    &mut (),
                    table,
                    &mut Vec::new(),
                )
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("decode+table+detect", |b| {
        b.iter_batched_ref(
            || {
                (
                    Table::new(Limits::default()),
                    Detector::new(Rules::default(), Services::builtin(), 0),
                    Vec::with_capacity(BATCH),
                    Vec::new(),
                    procs(),
                )
            },
            |(table, det, batch, alerts, procs)| {
                pipeline::ingest(&raw, EVENT_SIZE, batch, procs, det, table, alerts)
            },
            BatchSize::LargeInput,
        )
    });
    // As the agent does: the batch's owners from the process cache, then a line
    // per event (with process.executable, entity_id, parent, start); and the same
    // without the owners (what `NETTA_NO_IDENTITY` leaves), so the difference is
    // process identity's part of the line path.
    for (name, identity) in [
        ("decode+json-line", true),
        ("decode+json-line-no-identity", false),
    ] {
        g.bench_function(name, |b| {
            let clock = netta::api::Clock::new();
            let mut procs = procs();
            let mut batch = Vec::with_capacity(BATCH);
            let mut out = Vec::with_capacity(1 << 20);
            b.iter(|| {
                let mut bytes = 0;
                for chunk in raw.chunks(BATCH * EVENT_SIZE) {
                    batch.clear();
                    batch.extend(
                        chunk
                            .chunks_exact(EVENT_SIZE)
                            .filter_map(|r| ConnEvent::decode(r).ok()),
                    );
                    if identity {
                        pipeline::identify(&mut procs, &mut (), &mut batch, &[]);
                    } else {
                        for ev in &mut batch {
                            ev.who.uid = None;
                        }
                    }
                    for ev in &batch {
                        netta::api::write_line(&mut out, ev, &clock);
                    }
                    if out.len() > (1 << 20) {
                        bytes += out.len();
                        out.clear();
                    }
                }
                bytes
            })
        });
    }
    g.finish();
}

/// The sinks of `netta agent` on the same records: serialised once per batch
/// (fan-out) and written by one or two file sinks to /dev/null (no kernel copy),
/// so the difference is what a second sink costs netta itself.
fn sinks(c: &mut Criterion) {
    use netta::api::sink::{fan_out, spawn, SinkSpec, SinkStats};
    use netta::api::{Clock, Record};
    use std::sync::Arc;
    use tokio::sync::{mpsc, watch};
    const CONNS: u32 = 25_000;
    let raw = records(CONNS);
    let events: Vec<ConnEvent> = raw
        .chunks_exact(EVENT_SIZE)
        .filter_map(|r| ConnEvent::decode(r).ok())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(events.len() as u64));
    for n in [1usize, 2] {
        g.bench_function(format!("sinks-{n}"), |b| {
            b.iter_batched(
                || {
                    let (tx, rx) = mpsc::channel(events.len());
                    for e in &events {
                        let _ = tx.try_send(Record::Event(e.clone()));
                    }
                    rx
                },
                |rx| {
                    rt.block_on(async {
                        let clock = Clock::fixed(0);
                        let (stop, stop_rx) = watch::channel(false);
                        let (_fan_stop, fan_rx) = watch::channel(false);
                        let mut outs = Vec::new();
                        let mut tasks = Vec::new();
                        for _ in 0..n {
                            let (tx, rx) = mpsc::channel(1 << 12);
                            let stats = Arc::new(SinkStats::default());
                            outs.push((tx, vec![stats.clone()]));
                            let spec = SinkSpec::File("/dev/null".into());
                            tasks.push(spawn(spec, rx, clock.clone(), stats, stop_rx.clone()));
                        }
                        fan_out(rx, clock.clone(), outs, Default::default(), fan_rx).await;
                        let _ = stop.send(true);
                        for t in tasks {
                            let _ = t.await;
                        }
                    })
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, ingest, sinks);
criterion_main!(benches);
