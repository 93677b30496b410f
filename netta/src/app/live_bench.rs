//! Hidden commands for `cargo xtask bench-live`: the cost of one live-counter
//! refresh on this machine's connections (`live-bench`), and `top`'s frame time
//! on a synthetic table (`top-bench`). Both print one JSON object.
use std::time::Instant;

use anyhow::Context as _;

use crate::app::output::print_out;
use crate::core::clock::boot_now;
use crate::core::event::{Direction, OwnerSource, Proto, State};
use crate::core::sanitize::Comm;
use crate::core::table::{Conn, Key, Live, Origin, Snapshot, Table};
use crate::host::{Host, Os};

/// CPU seconds this process has used (user + system).
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

/// Seeds a table from /proc as the agent does, then times `runs` refreshes
/// (sock_diag dump + applying it): wall ms and CPU ms per refresh.
pub fn live_bench(runs: usize) -> anyhow::Result<()> {
    let os = Os::default();
    let snap = os.read_sockets().context("reading /proc/net")?;
    let mut table = Table::default();
    table.reconcile(&snap.sockets, &snap.netns, boot_now(), &mut |_| None);
    let mut sample = Vec::new();
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    let mut updated = 0;
    for _ in 0..runs.max(1) {
        sample.clear();
        let (t0, c0) = (Instant::now(), cpu_seconds());
        os.tcp_counters(&mut sample).context("sock_diag dump")?;
        updated = crate::core::live::apply_sample(&mut table, &sample, boot_now());
        wall.push(t0.elapsed().as_secs_f64() * 1e3);
        cpu.push((cpu_seconds() - c0) * 1e3);
    }
    let mean_cpu = cpu.iter().sum::<f64>() / cpu.len() as f64;
    print_out(
        &(serde_json::json!({
            "rows": table.len(),
            "sampled": sample.len(),
            "updated": updated,
            "runs": wall.len(),
            "wall_ms_median": percentile(wall.clone(), 0.5),
            "wall_ms_p99": percentile(wall, 0.99),
            "cpu_ms_mean": mean_cpu,
            // Refreshing once a second costs this fraction of one core.
            "core_fraction_at_1hz": mean_cpu / 1e3,
        })
        .to_string()
            + "\n"),
    )
}

/// `conns` synthetic open connections, all moving data.
fn synthetic(conns: usize) -> Snapshot {
    let mut snap = Snapshot::default();
    for i in 0..conns {
        let port = 10_000 + (i % 50_000) as u16;
        let host = (i / 50_000) as u8;
        snap.conns.push(Conn {
            key: Key::Sock(i as u64 + 1),
            proto: Proto::Tcp,
            local: format!("10.0.{host}.1:{port}").parse().unwrap(),
            remote: format!("192.0.2.{}:443", i % 250).parse().unwrap(),
            state: State::Established,
            direction: Direction::Egress,
            pid: 1000 + (i % 300) as u32,
            comm: Comm::from_bytes(format!("proc{}", i % 300).as_bytes()),
            owner: OwnerSource::Hook,
            start_ns: 1_000_000_000,
            bytes_sent: (i as u64) * 1_000,
            bytes_recv: (i as u64) * 300,
            packets: 0,
            last_ns: 0,
            inode: 0,
            netns: 0,
            who: crate::core::event::Who {
                uid: Some(0),
                ..Default::default()
            },
            seen_ns: 1,
            origin: Origin::Event,
            live: Live {
                rate_sent: (i as u64 * 7919) % 1_000_000,
                rate_recv: (i as u64 * 104_729) % 100_000,
                rtt_us: 100 + (i % 900) as u32,
                ..Live::default()
            },
            domain: None,
        });
    }
    snap
}

/// One `top` frame (update from a snapshot, then drawing it on a 200×50
/// screen), `frames` times, on `conns` connections.
pub fn top_bench(conns: usize, frames: usize) -> anyhow::Result<()> {
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    let snap = synthetic(conns);
    let services = crate::core::services::Services::builtin();
    let mut top = crate::core::top::Top::new("eBPF, ring buffer".into());
    let mut term = Terminal::new(TestBackend::new(200, 50))?;
    let mut times = Vec::new();
    for i in 0..frames.max(1) {
        let t0 = Instant::now();
        top.update(
            &snap,
            &services,
            10_000_000_000 + i as u64 * 1_000_000_000,
            0,
        );
        term.draw(|f| crate::render::top::draw(f, &mut top, true))?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    print_out(
        &(serde_json::json!({
            "connections": conns,
            "frames": times.len(),
            "frame_ms_median": percentile(times.clone(), 0.5),
            "frame_ms_p99": percentile(times.clone(), 0.99),
            "frame_ms_max": percentile(times, 1.0),
        })
        .to_string()
            + "\n"),
    )
}
