//! A fixed table for snapshot tests of every view: IPv4 and IPv6, TCP and UDP,
//! listeners, closed and failed connections, an unknown owner and a hostile name.
use crate::core::event::{Direction, OwnerSource, Proto, State};
use crate::core::sanitize::Comm;
use crate::core::table::{Closed, Conn, Counters, Key, Origin, Snapshot};

pub const SEC: u64 = 1_000_000_000;

/// The original tool's rules on one snapshot, without incident state (one-shot use).
pub fn scan(
    snap: &Snapshot,
    services: &crate::core::services::Services,
    rules: &crate::detect::Rules,
    now_ns: u64,
) -> Vec<crate::detect::Alert> {
    let mut d = crate::detect::Detector::new(rules.clone(), services.clone(), 0);
    let mut out = Vec::new();
    d.scan_table(snap, now_ns, &mut out);
    out
}

/// Wall clock for the fixture: BOOTTIME 0 is 2024-10-15T14:30:00Z.
pub fn clock() -> crate::core::clock::Clock {
    crate::core::clock::Clock::fixed(1_729_002_600 * SEC as i128)
}

#[allow(clippy::too_many_arguments)]
pub fn conn(
    key: u64,
    proto: Proto,
    local: &str,
    remote: &str,
    state: State,
    direction: Direction,
    pid: u32,
    comm: &[u8],
) -> Conn {
    Conn {
        key: Key::Sock(key),
        proto,
        local: local.parse().unwrap(),
        remote: remote.parse().unwrap(),
        state,
        direction,
        pid,
        comm: Comm::from_bytes(comm),
        owner: if pid == 0 {
            OwnerSource::Unknown
        } else {
            OwnerSource::Hook
        },
        start_ns: 100 * SEC,
        bytes_sent: 0,
        bytes_recv: 0,
        packets: 0,
        last_ns: 100 * SEC,
        inode: 0,
        netns: 0,
        who: crate::core::event::Who {
            uid: Some(0),
            ..Default::default()
        },
        seen_ns: 100 * SEC,
        origin: Origin::Event,
        live: Default::default(),
        domain: None,
    }
}

/// Inodes of the fixture's network namespaces: the host's and a pod's.
pub const HOST_NETNS: u32 = 4_026_531_840;
pub const POD_NETNS: u32 = 4_026_532_999;

/// The fixture's nginx: in a pod's container, its user without a name here.
fn owned_nginx() -> crate::core::event::Who {
    let mut who = owned();
    who.uid = Some(101);
    who.user = None;
    who.process = None;
    who
}

/// An owner everything is known of: alice's python3 (pid 42, parent 7, started
/// at wall-clock 2023-11-14T22:13:20Z), with arguments, in a pod's container.
pub fn owned() -> crate::core::event::Who {
    use crate::core::cgroup::{Container, Pod};
    use crate::core::process::Process;
    use crate::core::sanitize::Text;
    use std::sync::Arc;
    crate::core::event::Who {
        uid: Some(1000),
        user: Some(Text::escaped(b"alice", 64)),
        cgroup: 0,
        process: Some(Arc::new(Process {
            pid: 42,
            ppid: 7,
            start_ns: 1_700_000_000_000_000_000,
            uid: 1000,
            cgroup: 0,
            entity_id: "0123456789abcdef0123456789abcdef".into(),
            executable: Some(Text::escaped(b"/usr/bin/python3", 256)),
            args: Some(vec![Text::escaped(b"python3", 64), Text::escaped(b"-c\n", 64)].into()),
            args_truncated: false,
        })),
        container: Some(Arc::new(Container {
            id: Some("3f2a8b5c".repeat(8).into()),
            pod: Some(Pod {
                uid: "6a1b3c4d-1111-2222-3333-444455556666".into(),
                name: Some(Text::escaped(b"web-0", 64)),
                namespace: Some(Text::escaped(b"default", 64)),
            }),
        })),
    }
}

/// `n` egress TCP connections from consecutive ports of `ip` (from `port0`) to `remote`.
pub fn from_ports(
    n: u16,
    ip: &str,
    port0: u16,
    remote: &str,
    state: State,
    pid: u32,
    comm: &[u8],
) -> Vec<Conn> {
    (port0..port0 + n)
        .map(|p| {
            let local = format!("{ip}:{p}");
            let key = (1 << 32) + u64::from(p);
            conn(
                key,
                Proto::Tcp,
                &local,
                remote,
                state,
                Direction::Egress,
                pid,
                comm,
            )
        })
        .collect()
}

pub fn snapshot() -> Snapshot {
    use Direction::*;
    use Proto::*;
    use State::*;
    type Row = (
        Proto,
        &'static str,
        &'static str,
        State,
        Direction,
        u32,
        &'static [u8],
    );
    let rows: [Row; 10] = [
        (
            Tcp,
            "127.0.0.1:8080",
            "0.0.0.0:0",
            Listen,
            Unknown,
            1234,
            b"web-server",
        ),
        (
            Tcp,
            "0.0.0.0:22",
            "0.0.0.0:0",
            Listen,
            Unknown,
            999,
            b"sshd",
        ),
        (Tcp, "[::]:443", "[::]:0", Listen, Unknown, 4321, b"nginx"),
        (
            Tcp,
            "192.168.1.100:54321",
            "93.184.216.34:443",
            Established,
            Egress,
            5678,
            b"chrome",
        ),
        (
            Tcp,
            "192.168.1.100:12345",
            "142.250.185.46:443",
            Established,
            Egress,
            5678,
            b"chrome",
        ),
        (
            Tcp,
            "192.168.1.100:40000",
            "93.184.216.34:65432",
            Established,
            Egress,
            77,
            b"\x1b[31mevil\n,=1",
        ),
        (
            Tcp,
            "[2001:db8::10]:443",
            "[2001:db8:ffff:ffff:ffff:ffff:ffff:1]:51000",
            Established,
            Ingress,
            4321,
            b"nginx",
        ),
        (
            Tcp,
            "127.0.0.1:41000",
            "127.0.0.1:8080",
            TimeWait,
            Unknown,
            0,
            b"",
        ),
        (
            Udp,
            "0.0.0.0:5353",
            "0.0.0.0:0",
            Unconn,
            Unknown,
            555,
            b"avahi-daemon",
        ),
        (
            Udp,
            "10.0.0.5:40001",
            "10.0.0.53:53",
            Flow,
            Egress,
            600,
            b"resolver",
        ),
    ];
    let mut conns: Vec<Conn> = rows
        .iter()
        .zip(1..)
        .map(|(&(proto, local, remote, state, dir, pid, comm), key)| {
            conn(key, proto, local, remote, state, dir, pid, comm)
        })
        .collect();
    conns[3].bytes_sent = 1_200;
    conns[3].bytes_recv = 48_000;
    conns[9].packets = 12;
    conns[9].bytes_sent = 480;
    // The host's network namespace, but nginx runs in a pod's container.
    for c in &mut conns {
        c.netns = HOST_NETNS;
    }
    for c in conns.iter_mut().filter(|c| c.pid == 4321) {
        c.netns = POD_NETNS;
        c.who = owned_nginx();
    }
    let mut closed = conn(
        11,
        Tcp,
        "192.168.1.100:50000",
        "93.184.216.34:443",
        Close,
        Egress,
        5678,
        b"chrome",
    );
    closed.bytes_sent = 500;
    closed.bytes_recv = 9_000;
    let mut failed = conn(
        12,
        Tcp,
        "127.0.0.1:50001",
        "127.0.0.1:9",
        SynSent,
        Egress,
        88,
        b"curl",
    );
    failed.start_ns = 150 * SEC;
    let history = vec![
        Closed {
            conn: closed,
            end_ns: 100 * SEC + 1_500_000,
            failed: false,
        },
        Closed {
            conn: failed,
            end_ns: 150 * SEC + 300_000,
            failed: true,
        },
    ];
    Snapshot {
        conns,
        history,
        counters: Counters {
            events: 40,
            opened: 14,
            closed: 9,
            failed: 1,
            short_lived: 7,
            listen_started: 3,
            listen_stopped: 0,
            udp_flows: 1,
            bytes_sent: 1_700,
            bytes_recv: 57_000,
            lost: 0,
            observed: 22,
            ..Counters::default()
        },
    }
}
