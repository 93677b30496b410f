//! The whole agent on a fake host: recorded kernel records and /proc text go in,
//! the ECS lines of its record bus and its table views come out.
use std::io;
use std::sync::Mutex;

use netta_ebpf::{Event, ExecEvent, Flags, Kind, TaskEvent, AF_INET, IPPROTO_TCP};
use rustc_hash::FxHashMap;
use tokio::sync::oneshot;

use super::*;
use crate::core::event::Proto;
use crate::core::filter::{select, Filter};
use crate::core::proc_net::{parse_net, Owner};
use crate::core::process::Seed;
use crate::core::sanitize::{Comm, Text};
use crate::host::{Kernel, MakeHandler, Sockets};
use crate::render::list::{render_history, render_list};

const SEC: u64 = 1_000_000_000;
/// The fake host's kernel clock stands still here; records come after it.
const NOW: u64 = 1_000 * SEC;
/// The host's network namespace.
const NETNS: u32 = 4_026_531_840;
/// backdoor's cgroup: a docker container.
const CGROUP: u64 = 7777;
const CONTAINER: &str = "3f2a8b5c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809102";

/// /proc/net/tcp at start: nginx listening on 127.0.0.1:8080 (inode 555) and an
/// inbound ssh session (inode 556).
const PROC_TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 555 1 0000000000000000 100 0 0 10 0
   1: 0100000A:0016 0200000A:D431 01 00000000:00000000 00:00000000 00000000     0        0 556 1 0000000000000000 20 4 30 10 -1
";

struct FakeMaps;

impl KernelMaps for FakeMaps {
    fn counter(&self, _: u32) -> u64 {
        0
    }
    fn udp_flows(&self) -> Vec<(netta_ebpf::UdpFlowKey, netta_ebpf::UdpFlowStats)> {
        Vec::new()
    }
    fn forget_udp_flow(&mut self, _: &netta_ebpf::UdpFlowKey) {}
    fn synack_retransmits(&self) -> Vec<(u16, u16, u64)> {
        Vec::new()
    }
}

struct FakeHost {
    records: Vec<Vec<u8>>,
    /// The kernel stream starts when the test has subscribed.
    go: Mutex<Option<oneshot::Receiver<()>>>,
    /// Captured DNS packets (netns, IP packet), handed over when the capture starts.
    dns: Vec<(u64, Vec<u8>)>,
}

impl Host for FakeHost {
    fn start_kernel(
        &self,
        _: &ebpf::Options,
        make_handler: MakeHandler<'_>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Kernel, String> {
        let mut handler = make_handler();
        let records = self.records.clone();
        let go = lock(&self.go).take();
        let task = tokio::spawn(async move {
            if let Some(go) = go {
                let _ = go.await;
            }
            for r in &records {
                handler.record(r);
            }
            handler.flush();
            let _ = shutdown.changed().await;
        });
        Ok(Kernel {
            transport: Transport::Ring,
            dns_in_kernel: false,
            maps: Box::new(FakeMaps),
            readers: Box::pin(async move {
                let _ = task.await;
            }),
        })
    }

    fn read_sockets(&self) -> io::Result<Sockets> {
        let (mut sockets, errors) = parse_net(PROC_TCP.as_bytes(), Proto::Tcp);
        assert!(errors.is_empty(), "{errors:?}");
        for s in &mut sockets {
            s.netns = NETNS;
        }
        Ok(Sockets {
            sockets,
            errors: Vec::new(),
            netns: vec![NETNS],
        })
    }

    /// nginx and sshd were running before netta; curl and backdoor start later.
    fn processes(&self, _: bool) -> Vec<Seed> {
        let seed = |pid, exe: &str, uid| Seed {
            pid,
            ppid: 1,
            start_ns: 10 * SEC,
            uid,
            cgroup: 0,
            executable: Some(exe.as_bytes().to_vec()),
            args: None,
        };
        vec![
            seed(100, "/usr/sbin/nginx", 33),
            seed(200, "/usr/sbin/sshd", 0),
        ]
    }

    fn user_name(&self, uid: u32) -> Option<Text> {
        let name = match uid {
            0 => "root",
            33 => "www-data",
            1000 => "alice",
            _ => return None,
        };
        Some(Text::escaped(name.as_bytes(), 64))
    }

    fn cgroups(&self) -> Vec<(u64, String)> {
        vec![
            (1, "/".into()),
            (CGROUP, format!("/system.slice/docker-{CONTAINER}.scope")),
        ]
    }

    fn socket_owners(&self) -> FxHashMap<u64, Owner> {
        let owner = |pid, comm: &[u8]| Owner {
            pid,
            comm: Comm::from_bytes(comm),
        };
        [(555, owner(100, b"nginx")), (556, owner(200, b"sshd"))]
            .into_iter()
            .collect()
    }

    fn services(&self) -> Services {
        Services::builtin()
    }

    fn now_ns(&self) -> u64 {
        NOW
    }

    fn clock(&self) -> Clock {
        // BOOTTIME 0 is 2024-10-15T14:30:00Z.
        Clock::fixed(1_729_002_600 * SEC as i128)
    }

    fn start_dns(
        &self,
        mut handler: Box<dyn crate::host::dns::DnsHandler>,
        _: watch::Receiver<bool>,
    ) -> Result<crate::host::dns::DnsCapture, String> {
        handler.namespaces(1);
        for (ns, p) in &self.dns {
            handler.packet(*ns, p);
        }
        Ok(crate::host::dns::DnsCapture {
            join: Box::pin(async {}),
        })
    }
}

/// One loopback TCP record: (kind, flags, sock, local port, remote port, pid,
/// process name, ns after the first record).
type Spec = (Kind, Flags, u64, u16, u16, u32, &'static [u8], u64);

/// The user and cgroup the kernel reports for each fake process.
fn owner_of(pid: u32) -> (u32, u64) {
    match pid {
        300 => (1000, 0),
        100 => (33, 0),
        400 => (0, CGROUP),
        _ => (0, 0),
    }
}

/// A process record: (kind, pid, parent, program for an exec, ns after the first record).
fn process_record(kind: Kind, pid: u32, ppid: u32, path: &str, dt: u64) -> Vec<u8> {
    let (uid, cgroup) = owner_of(pid);
    let mut e = ExecEvent::zeroed();
    e.task = TaskEvent {
        ts_ns: NOW + SEC + dt,
        kind: kind as u8,
        pid,
        ppid,
        uid,
        cgroup,
        // Started half a second before the first record.
        start_ns: NOW + SEC / 2,
        ..TaskEvent::zeroed()
    };
    let size = if kind == Kind::Exec {
        e.path[..path.len()].copy_from_slice(path.as_bytes());
        e.task.path_len = path.len() as u16;
        netta_ebpf::EXEC_SIZE_NO_ARGS
    } else {
        netta_ebpf::TASK_EVENT_SIZE
    };
    // SAFETY: a repr(C) record of integers and bytes.
    let all = unsafe {
        std::slice::from_raw_parts(
            &e as *const ExecEvent as *const u8,
            std::mem::size_of::<ExecEvent>(),
        )
    };
    all[..size].to_vec()
}

fn record(&(kind, flags, sock, local_port, remote_port, pid, name, dt): &Spec) -> Vec<u8> {
    let loopback = [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let mut comm = [0u8; netta_ebpf::COMM_LEN];
    comm[..name.len()].copy_from_slice(name);
    let closed = kind == Kind::Closed;
    let (uid, cgroup) = owner_of(pid);
    let e = Event {
        kind: kind as u8,
        flags,
        sock,
        family: AF_INET,
        protocol: IPPROTO_TCP,
        local_addr: loopback,
        remote_addr: loopback,
        local_port,
        remote_port,
        pid,
        uid,
        cgroup,
        netns: NETNS,
        comm,
        start_ns: NOW + SEC,
        ts_ns: NOW + SEC + dt,
        bytes_sent: if closed { 100 } else { 0 },
        bytes_recv: if closed { 2000 } else { 0 },
        ..Event::zeroed()
    };
    e.as_bytes().to_vec()
}

/// curl (started after netta: its exec is a record) connects to nginx (older
/// than netta: seeded from /proc) and closes (both ends seen, as on loopback)
/// and exits; a new listener starts in a container (an alert); one record is garbage.
fn records() -> Vec<Vec<u8>> {
    const INITIATOR: Flags = Flags::INITIATOR;
    const ACCEPTED: Flags = Flags::ACCEPTED;
    use Kind::{Closed as CLOSED, ListenStarted as LISTEN_STARTED, Opened as OPENED};
    const SPECS: [Spec; 5] = [
        (OPENED, INITIATOR, 0x10, 40000, 8080, 300, b"curl", 0),
        (OPENED, ACCEPTED, 0x11, 8080, 40000, 100, b"nginx", 1000),
        (
            CLOSED, INITIATOR, 0x10, 40000, 8080, 300, b"curl", 2_000_000,
        ),
        (
            CLOSED, ACCEPTED, 0x11, 8080, 40000, 100, b"nginx", 2_001_000,
        ),
        (
            LISTEN_STARTED,
            Flags::empty(),
            0x12,
            9090,
            0,
            400,
            b"backdoor",
            3 * SEC,
        ),
    ];
    let mut out: Vec<Vec<u8>> = SPECS.iter().map(record).collect();
    out.insert(4, vec![0xff; 7]);
    out.insert(0, process_record(Kind::Fork, 300, 250, "", 0));
    out.insert(1, process_record(Kind::Exec, 300, 250, "/usr/bin/curl", 0));
    out.insert(6, process_record(Kind::Exit, 300, 250, "", 2_500_000));
    out.insert(
        7,
        process_record(Kind::Exec, 400, 1, "/tmp/backdoor", 2 * SEC),
    );
    out
}

#[tokio::test]
async fn whole_agent_on_a_fake_host() {
    let (go, go_rx) = oneshot::channel();
    let host = Arc::new(FakeHost {
        records: records(),
        go: Mutex::new(Some(go_rx)),
        dns: Vec::new(),
    });
    let agent = Agent::start_on(host, AgentOptions::default()).await;
    assert_eq!(agent.mode(), Mode::Ebpf(Transport::Ring));
    let mut rx = agent.shared.subscribe(1024);
    let seeded = render_list(
        "SEEDED FROM /proc",
        &select(&agent.shared.snapshot(), &Filter::default()),
    );
    go.send(()).unwrap();

    // Five events change the table (the garbage record does not decode), then the alert.
    let mut lines = String::new();
    let mut out = Vec::new();
    for _ in 0..6 {
        let rec = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .expect("records arrive")
            .expect("the bus stays open");
        out.clear();
        rec.write_json(&mut out, &agent.shared.clock);
        let line = std::str::from_utf8(&out).unwrap();
        // event.id numbers lines process-wide (other tests run alongside): mask it.
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = v["event"]["id"].as_str().expect("event.id");
        assert!(id.starts_with("0000000000000001-"), "{id}");
        lines.push_str(&line.replace(id, "0000000000000001-N"));
    }
    let snap = agent.shared.snapshot();
    assert_eq!(snap.counters.decode_errors, 1);
    insta::assert_snapshot!("fake_host_ecs_lines", lines);
    insta::assert_snapshot!(
        "fake_host_views",
        format!(
            "{seeded}\n{}\n{}",
            render_list(
                "ACTIVE NETWORK CONNECTIONS",
                &select(&snap, &Filter::default())
            ),
            render_history(&snap.history, &agent.shared.clock)
        )
    );
    agent.shutdown().await;
}

/// A DNS answer for 127.0.0.1 comes first (and a hostile packet), then curl's
/// connection: its lines and its row carry the name; `--no-dns` leaves them bare.
#[tokio::test]
async fn a_dns_answer_names_the_next_connection() {
    use crate::core::dns::build::{name, response, udp4};
    let m = response(
        "Loop-Test.example",
        &[(name("loop-test.example"), 1, 0, vec![127, 0, 0, 1])],
    );
    let answer = udp4([127, 0, 0, 53], [127, 0, 0, 1], 5353, &m);
    let mut looped = response("x.example", &[]);
    looped[7] = 1;
    let at = looped.len() as u8;
    looped.extend_from_slice(&[0xc0, at]);
    for dns in [true, false] {
        let (go, go_rx) = oneshot::channel();
        let host = Arc::new(FakeHost {
            records: records(),
            go: Mutex::new(Some(go_rx)),
            dns: vec![
                (NETNS.into(), udp4([1; 4], [2; 4], 9, &looped)),
                (NETNS.into(), answer.clone()),
            ],
        });
        let opts = AgentOptions {
            dns,
            ..AgentOptions::default()
        };
        let agent = Agent::start_on(host, opts).await;
        let mut rx = agent.shared.subscribe(1024);
        go.send(()).unwrap();
        let rec = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        let Record::Event(opened) = &rec else {
            panic!("{rec:?}")
        };
        let mut out = Vec::new();
        rec.write_json(&mut out, &agent.shared.clock);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        // The connection has closed by now: its history row keeps the name.
        let snap = agent.shared.snapshot();
        let named = snap
            .history
            .iter()
            .filter(|h| h.conn.domain.is_some())
            .count();
        if dns {
            assert_eq!(
                opened.domain.as_ref().map(|d| d.as_str()),
                Some("loop-test.example")
            );
            assert_eq!(v["destination"]["domain"], "loop-test.example", "{v}");
            // Both ends are on loopback, so the accepted side's peer is named too.
            assert_eq!(named, 2, "{:?}", snap.history);
            let d = agent.shared.dns();
            assert_eq!((d.counters.answers, d.counters.malformed), (1, 1));
            assert_eq!(d.cache.len(), 1);
        } else {
            assert_eq!(opened.domain, None);
            assert!(v["destination"]["domain"].is_null());
            assert_eq!(named, 0);
        }
        agent.shutdown().await;
    }
}
