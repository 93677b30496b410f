//! Hidden commands for `cargo xtask bench-live`: the cost of one live-counter
//! refresh on this machine's connections (`live-bench`), and `top`'s frame time
//! on a synthetic table (`top-bench`). Both print one JSON object.
use std::time::Instant;

use anyhow::Context as _;

use crate::app::output::print_out;
use crate::core::clock::boot_now;
use crate::core::event::{Action, ConnEvent, Direction, OwnerSource};
use crate::core::sanitize::Comm;
use crate::core::table::{Key, Live, Table};
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
/// (sock_diag dump + applying it) as the agent makes them once a second: wall
/// ms and CPU ms per refresh. The first finds every row by address; the
/// others by socket cookie, leaving idle rows alone but every 8th time.
pub fn live_bench(runs: usize) -> anyhow::Result<()> {
    let os = Os::default();
    let snap = os.read_sockets().context("reading /proc/net")?;
    let mut table = Table::default();
    table.reconcile(&snap.sockets, &snap.netns, boot_now(), &mut |_| None);
    let mut sample = Vec::new();
    let mut sampler = crate::core::live::Sampler::default();
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    let mut updated = 0;
    for _ in 0..runs.max(1) {
        sample.clear();
        let (t0, c0) = (Instant::now(), cpu_seconds());
        os.tcp_counters(&mut sample).context("sock_diag dump")?;
        updated = sampler.apply(&mut table, &sample, boot_now());
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
            "cpu_ms_first": cpu.first().copied().unwrap_or(0.0),
            // Refreshing once a second costs this fraction of one core.
            "core_fraction_at_1hz": mean_cpu / 1e3,
        })
        .to_string()
            + "\n"),
    )
}

/// A table of `conns` synthetic open connections, all moving data.
fn synthetic(conns: usize) -> Table {
    let mut table = Table::default();
    for i in 0..conns {
        let port = 10_000 + (i % 50_000) as u16;
        let host = (i / 50_000) as u8;
        let mut ev = ConnEvent::blank(Action::Opened, 1_000_000_000);
        ev.sock = i as u64 + 1;
        ev.local = format!("10.0.{host}.1:{port}").parse().unwrap();
        ev.remote = format!("192.0.2.{}:443", i % 250).parse().unwrap();
        ev.direction = Direction::Egress;
        ev.pid = 1000 + (i % 300) as u32;
        ev.comm = Comm::from_bytes(format!("proc{}", i % 300).as_bytes());
        ev.owner = OwnerSource::Hook;
        ev.start_ns = 1_000_000_000;
        table.apply(&ev);
    }
    for c in table.rows_mut() {
        let Key::Sock(s) = c.key else { continue };
        let i = s - 1;
        c.bytes_sent = i * 1_000;
        c.bytes_recv = i * 300;
        c.live = Live {
            rate_sent: (i * 7919) % 1_000_000,
            rate_recv: (i * 104_729) % 100_000,
            rtt_us: 100 + (i % 900) as u32,
            ..Live::default()
        };
    }
    table
}

/// One `top` frame as the standalone view makes it (a picture of the table,
/// the update from it, then drawing it on a 200×50 screen), `frames` times, on
/// `conns` connections; then as an attached view makes it, the picture coming
/// as the agent's API sends it (JSON, opaque keys).
pub fn top_bench(conns: usize, frames: usize) -> anyhow::Result<()> {
    use crate::core::top::{Picture, Top};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    let table = synthetic(conns);
    let services = crate::core::services::Services::builtin();
    let ids = crate::host::identity::get().sock_ids;
    let mut term = Terminal::new(TestBackend::new(200, 50))?;
    let mut frame = |attached: bool| -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
        let mut top = Top::new("eBPF, ring buffer".into(), services.clone());
        let (mut times, mut pictures) = (Vec::new(), Vec::new());
        for i in 0..frames.max(1) {
            let now = 10_000_000_000 + i as u64 * 1_000_000_000;
            let t0 = Instant::now();
            let pic = if attached {
                let pic = Picture::of(table.conns(), table.counters(), now, |k| k.hidden(&ids));
                serde_json::from_slice(&serde_json::to_vec(&pic)?)?
            } else {
                Picture::of(table.conns(), table.counters(), now, |k| k)
            };
            let t1 = Instant::now();
            top.update(&pic, now, 0);
            term.draw(|f| crate::render::top::draw(f, &mut top, true))?;
            times.push(t0.elapsed().as_secs_f64() * 1e3);
            pictures.push((t1 - t0).as_secs_f64() * 1e3);
        }
        Ok((times, pictures))
    };
    let (times, pictures) = frame(false)?;
    let (attached, attached_pictures) = frame(true)?;
    print_out(
        &(serde_json::json!({
            "connections": conns,
            "frames": times.len(),
            "frame_ms_median": percentile(times.clone(), 0.5),
            "frame_ms_p99": percentile(times.clone(), 0.99),
            "frame_ms_max": percentile(times, 1.0),
            // Of which the table's picture.
            "picture_ms_median": percentile(pictures, 0.5),
            // Attached: the picture serialised (by the agent) and parsed (by the view).
            "attached_frame_ms_median": percentile(attached.clone(), 0.5),
            "attached_frame_ms_p99": percentile(attached, 0.99),
            "attached_picture_ms_median": percentile(attached_pictures, 0.5),
        })
        .to_string()
            + "\n"),
    )
}
