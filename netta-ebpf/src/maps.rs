//! The program's maps and its `CONFIG`; names are `netta_ebpf::maps`.
use aya_ebpf::{
    macros::map,
    maps::{LruHashMap, PerCpuArray, PerfEventArray, RingBuf},
    Global,
};
use netta_ebpf::{
    counter, Config, Event, ListenerInfo, SendDest, SockInfo, UdpFlowKey, UdpFlowStats,
};

/// Set by the loader (offsets from BTF); the defaults only matter to nobody.
#[unsafe(no_mangle)]
pub static CONFIG: Global<Config> = Global::new(Config {
    all_states: 0,
    use_perf: 0,
    udp_via_length: 0,
    _pad: 0,
    wakeup_bytes: 256 * 1024,
    off_daddr: 0,
    off_rcv_saddr: 0,
    off_dport: 0,
    off_num: 0,
    off_v6_daddr: 0,
    off_v6_rcv_saddr: 0,
    off_family: 0,
    off_sk_flags: 0,
    off_bytes_acked: 0,
    off_bytes_received: 0,
    off_snd_una: 0,
    off_write_seq: 0,
    off_msg_name: 0,
    off_state: 0,
    off_skb_head: 0,
    off_skb_network_header: 0,
    off_skb_transport_header: 0,
    _pad2: 0,
});

#[map(name = "EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

#[map(name = "PERF_EVENTS")]
pub static PERF_EVENTS: PerfEventArray<Event> = PerfEventArray::new(0);

#[map(name = "COUNTERS")]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::LEN, 0);

#[map(name = "TCP_SOCKS")]
pub static TCP_SOCKS: LruHashMap<u64, SockInfo> = LruHashMap::with_max_entries(131_072, 0);

#[map(name = "LISTENERS")]
pub static LISTENERS: LruHashMap<u32, ListenerInfo> = LruHashMap::with_max_entries(4096, 0);

#[map(name = "UDP_FLOWS")]
pub static UDP_FLOWS: LruHashMap<UdpFlowKey, UdpFlowStats> =
    LruHashMap::with_max_entries(65_536, 0);

#[map(name = "SYNACK_RETRANS")]
pub static SYNACK_RETRANS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(4096, 0);

#[map(name = "SEND_DEST")]
pub static SEND_DEST: LruHashMap<u64, SendDest> = LruHashMap::with_max_entries(16_384, 0);
