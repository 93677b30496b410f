//! DNS responses and the packets that carry them: hostile input from whoever
//! answers. No panic, names within the wire limit and printable, bounded work.
#![no_main]
use libfuzzer_sys::fuzz_target;
use netta::api::dns;

fuzz_target!(|data: &[u8]| {
    check(data);
    // The same bytes as a whole packet, and as a message inside a UDP packet.
    if let Ok(Some(c)) = dns::captured(data) {
        check(c.message);
    }
    check_in_packet(data);
    // The same bytes as a kernel DNS record (the kernel capture): its packet
    // is never longer than the record, and reads like a capture's.
    if let Some((ev, packet)) = netta_ebpf::DnsEvent::parse(data) {
        assert_eq!(packet.len(), usize::from(ev.len));
        assert!(netta_ebpf::DNS_HEADER_SIZE + packet.len() <= data.len());
        if let Ok(Some(c)) = dns::captured(packet) {
            check(c.message);
        }
    }
});

fn check(msg: &[u8]) {
    if let Ok(Some(r)) = dns::parse(msg) {
        for name in std::iter::once(&r.question).chain(r.answers.iter().map(|a| &a.name)) {
            let s = name.as_str();
            assert!(s.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{s:?}");
            // At most 4 shown bytes (`\DDD`) per wire byte of a 255-byte name.
            assert!(s.len() <= 4 * dns::MAX_NAME, "{}", s.len());
        }
        for res in r.resolved() {
            assert!(res.chain.len() <= r.answers.len() + 1);
        }
    }
    for start in 0..msg.len().min(64) {
        let _ = dns::read_name(msg, start);
    }
}

fn check_in_packet(msg: &[u8]) {
    if msg.len() > 65_000 {
        return;
    }
    let p = dns::build::udp4([127, 0, 0, 53], [127, 0, 0, 1], 40_000, msg);
    let c = dns::captured(&p).expect("a well-formed packet").expect("from port 53");
    assert_eq!(c.message, msg);
}
