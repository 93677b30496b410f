//! Kernel records: any bytes decode to an event, a process record or an error,
//! and any sequence of them keeps the table, the process cache and the detector
//! consistent and bounded (no panics).
#![no_main]
use libfuzzer_sys::fuzz_target;
use netta::api::process::{Limits as ProcLimits, ProcEvent, ProcessCache};
use netta::api::{pipeline, ConnEvent, Detector, Limits, Rules, Services, Table};

fuzz_target!(|data: &[u8]| {
    let mut table = Table::new(Limits {
        max_live: 64,
        max_history: 16,
    });
    let mut procs = ProcessCache::new(
        ProcLimits {
            max: 32,
            grace_ns: 1_000,
        },
        "fuzz",
        10_000_000,
    );
    let mut det = Detector::new(Rules::default(), Services::builtin(), 0);
    let mut alerts = Vec::new();
    let _ = ConnEvent::decode(data);
    let _ = ProcEvent::decode(data);
    let mut batch = Vec::new();
    // Connection records, then process records (exec records without and with
    // arguments), each over the same bytes.
    for size in [
        netta_ebpf::EVENT_SIZE,
        netta_ebpf::TASK_EVENT_SIZE,
        netta_ebpf::EXEC_SIZE_NO_ARGS,
        netta_ebpf::MAX_RECORD_SIZE,
    ] {
        pipeline::ingest(data, size, &mut batch, &mut procs, &mut det, &mut table, &mut alerts);
    }
    assert!(procs.len() <= 32);
    let snap = table.snapshot();
    det.scan_table(&snap, u64::MAX / 2, &mut alerts);
    assert!(table.len() <= 64);
    assert!(snap.history.len() <= 16);
});
