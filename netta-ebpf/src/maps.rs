//! The program's maps and its `CONFIG`. A map's name is its identifier, which
//! `netta_ebpf::maps` spells for the loader (a host test checks they agree).
use aya_ebpf::{
    macros::map,
    maps::{LruHashMap, PerCpuArray, PerfEventArray, RingBuf},
    Global,
};
use netta_ebpf::{
    counter, Config, DnsEvent, Event, ExecEvent, ListenerInfo, SendDest, SockInfo, UdpFlowKey,
    UdpFlowStats,
};

/// Set by the loader (offsets from BTF); the defaults only matter to nobody.
#[unsafe(no_mangle)]
pub static CONFIG: Global<Config> = Global::new(Config {
    wakeup_bytes: 256 * 1024,
    ..Config::zeroed()
});

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

#[map]
pub static PERF_EVENTS: PerfEventArray<Event> = PerfEventArray::new(0);

#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::LEN, 0);

#[map]
/// Per-CPU LRU lists (BPF_F_NO_COMMON_LRU): an insert takes no global lock.
pub static TCP_SOCKS: LruHashMap<u64, SockInfo> =
    LruHashMap::with_max_entries(131_072, aya_ebpf::bindings::BPF_F_NO_COMMON_LRU);

#[map]
pub static LISTENERS: LruHashMap<u32, ListenerInfo> = LruHashMap::with_max_entries(4096, 0);

#[map]
pub static UDP_FLOWS: LruHashMap<UdpFlowKey, UdpFlowStats> =
    LruHashMap::with_max_entries(65_536, 0);

#[map]
pub static SYNACK_RETRANS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(4096, 0);

#[map]
pub static SEND_DEST: LruHashMap<u64, SendDest> = LruHashMap::with_max_entries(16_384, 0);

/// Where an exec record is built: it is larger than the BPF stack.
#[map]
pub static EXEC_SCRATCH: PerCpuArray<ExecEvent> = PerCpuArray::with_max_entries(1, 0);

/// Where a DNS record is built: it is larger than the BPF stack.
#[map]
pub static DNS_SCRATCH: PerCpuArray<DnsEvent> = PerCpuArray::with_max_entries(1, 0);
