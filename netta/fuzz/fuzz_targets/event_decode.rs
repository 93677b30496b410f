//! Kernel records: any bytes decode to an event or an error, and any sequence of
//! decoded events keeps the table and the detector consistent (no panics).
#![no_main]
use libfuzzer_sys::fuzz_target;
use netta::api::{pipeline, ConnEvent, Detector, Limits, Rules, Services, Table};

fuzz_target!(|data: &[u8]| {
    let mut table = Table::new(Limits {
        max_live: 64,
        max_history: 16,
    });
    let mut det = Detector::new(Rules::default(), Services::builtin(), 0);
    let mut alerts = Vec::new();
    let _ = ConnEvent::decode(data);
    let mut batch = Vec::new();
    pipeline::ingest(data, netta_abi::EVENT_SIZE, &mut batch, &mut det, &mut table, &mut alerts);
    let snap = table.snapshot();
    det.scan_table(&snap, u64::MAX / 2, &mut alerts);
    assert!(table.len() <= 64);
    assert!(snap.history.len() <= 16);
});
