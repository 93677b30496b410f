//! DNS attribution end to end: a real dnsmasq, started here, answers a test name;
//! netta's capture learns the answer (a `dns-answer` event) and the next
//! connection to that address carries `destination.domain`. Also inside a
//! network namespace this test creates, and with hostile packets from port 53.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netta_tests::servers::{private_dir, which};
use netta_tests::{
    free_tcp_port, netta_cmd, netta_json, require_ebpf, require_server, str_at, Events, Value,
};

const WAIT: Duration = Duration::from_secs(20);

/// A DNS query for `name` (type A, recursion desired).
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.split('.') {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    m
}

/// Asks `server` over UDP until it answers (dnsmasq may still be starting).
fn ask_udp(server: SocketAddr, name: &str) -> Vec<u8> {
    let s = UdpSocket::bind((server.ip(), 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        s.send_to(&query(0x4242, name), server).unwrap();
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            return buf[..n].to_vec();
        }
    }
    panic!("no DNS answer from {server} for {name}");
}

/// The same question over TCP (two-byte length prefix).
fn ask_tcp(server: SocketAddr, name: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(server).unwrap();
    let q = query(0x4343, name);
    s.write_all(&(q.len() as u16).to_be_bytes()).unwrap();
    s.write_all(&q).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut m = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut m).unwrap();
    m
}

/// A private dnsmasq: no config file, no upstream, only the test's names.
struct Dnsmasq {
    child: Child,
    _dir: PathBuf,
}

impl Dnsmasq {
    fn start(netns: Option<&str>, listen: &str, names: &[(&str, &str)]) -> Dnsmasq {
        let dir = private_dir("dnsmasq");
        let prog = which("dnsmasq").unwrap_or("/usr/sbin/dnsmasq".into());
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(prog);
                c
            }
            None => Command::new(prog),
        };
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--port=53",
            "--user=root",
        ])
        .arg(format!("--listen-address={listen}"))
        .arg(format!("--pid-file={}", dir.join("pid").display()))
        .arg(format!("--log-facility={}", dir.join("log").display()));
        for (name, ip) in names {
            cmd.arg(format!("--address=/{name}/{ip}"));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq");
        Dnsmasq { child, _dir: dir }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn answers_with(m: &[u8], ip: [u8; 4]) -> bool {
    m.windows(4).any(|w| w == ip)
}

/// `ask` got `ip` for `name` from the server, and netta reported the answer.
fn learned(
    ev: &mut Events,
    ask: fn(SocketAddr, &str) -> Vec<u8>,
    server: SocketAddr,
    name: &str,
    ip: &str,
) {
    let ip: std::net::Ipv4Addr = ip.parse().unwrap();
    assert!(answers_with(&ask(server, name), ip.octets()), "{name}");
    assert!(
        ev.wait_until(WAIT, |all| dns_answer_for(all, name).is_some()),
        "no dns-answer event for {name}"
    );
}

fn dns_answer_for<'a>(all: &'a [Value], name: &str) -> Option<&'a Value> {
    all.iter().find(|v| {
        str_at(v, &["event", "action"]) == Some("dns-answer")
            && str_at(v, &["dns", "question", "name"]) == Some(name)
    })
}

fn opened_to<'a>(all: &'a [Value], ip: &str, port: u16) -> Option<&'a Value> {
    all.iter().find(|v| {
        str_at(v, &["event", "action"]) == Some("connection-opened")
            && str_at(v, &["destination", "ip"]) == Some(ip)
            && v["destination"]["port"] == port
            && str_at(v, &["network", "direction"]) == Some("egress")
    })
}

/// Connects to `ip:port` (a listener there accepts) and closes.
fn connect_once(ip: &str, port: u16) {
    let l = TcpListener::bind((ip, port)).unwrap();
    let c = TcpStream::connect((ip, port)).unwrap();
    let (s, _) = l.accept().unwrap();
    drop(c);
    drop(s);
}

#[test]
fn a_connection_after_a_dns_answer_carries_the_domain() {
    require_ebpf!("a_connection_after_a_dns_answer_carries_the_domain");
    require_server!(
        "a_connection_after_a_dns_answer_carries_the_domain",
        "dnsmasq",
        "dnsmasq-base"
    );
    let server: SocketAddr = "127.0.5.3:53".parse().unwrap();
    let _dns = Dnsmasq::start(
        None,
        "127.0.5.3",
        &[
            ("bar-test.example", "127.0.0.77"),
            ("tcp-test.example", "127.0.0.78"),
        ],
    );
    let mut ev = Events::start(&[], &[]);
    // UDP: the answer is learned (and reported) before the client connects.
    learned(&mut ev, ask_udp, server, "bar-test.example", "127.0.0.77");
    let port = free_tcp_port("127.0.0.77");
    connect_once("127.0.0.77", port);
    // TCP port 53 too.
    learned(&mut ev, ask_tcp, server, "tcp-test.example", "127.0.0.78");
    let tcp_port = free_tcp_port("127.0.0.78");
    connect_once("127.0.0.78", tcp_port);
    assert!(ev.wait_until(WAIT, |all| opened_to(all, "127.0.0.78", tcp_port).is_some()));
    let all = ev.stop();

    let answer = dns_answer_for(&all, "bar-test.example").unwrap();
    assert_eq!(str_at(answer, &["dns", "type"]), Some("answer"));
    assert_eq!(
        answer["dns"]["resolved_ip"],
        serde_json::json!(["127.0.0.77"])
    );
    assert_eq!(str_at(answer, &["source", "ip"]), Some("127.0.5.3"));
    assert_eq!(str_at(answer, &["network", "transport"]), Some("udp"));
    let tcp_answer = dns_answer_for(&all, "tcp-test.example").unwrap();
    assert_eq!(str_at(tcp_answer, &["network", "transport"]), Some("tcp"));

    let opened = opened_to(&all, "127.0.0.77", port).expect("the connection's opened event");
    assert_eq!(
        str_at(opened, &["destination", "domain"]),
        Some("bar-test.example"),
        "{opened}"
    );
    let closed = all.iter().find(|v| {
        str_at(v, &["event", "action"]) == Some("connection-closed")
            && v["destination"]["port"] == port
            && str_at(v, &["network", "direction"]) == Some("egress")
    });
    assert_eq!(
        closed.and_then(|c| str_at(c, &["destination", "domain"])),
        Some("bar-test.example"),
        "the close keeps the name the connection began with"
    );
    let opened = opened_to(&all, "127.0.0.78", tcp_port).unwrap();
    assert_eq!(
        str_at(opened, &["destination", "domain"]),
        Some("tcp-test.example")
    );
}

/// Inodes of the packet sockets open in this network namespace (/proc/net/packet).
fn packet_socket_inodes() -> Vec<String> {
    let table = std::fs::read_to_string("/proc/net/packet").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().last().map(String::from))
        .collect()
}

/// Socket inodes among a process's open files.
fn socket_inodes(pid: u32) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|t| {
            let t = t.to_string_lossy().into_owned();
            t.strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(String::from)
        })
        .collect()
}

/// The kernel programs capture the answers (doctor says which) and the agent
/// opens no packet socket; ruling them all out falls back to one.
#[test]
fn the_kernel_program_captures_answers_and_no_packet_socket_is_opened() {
    require_ebpf!("the_kernel_program_captures_answers_and_no_packet_socket_is_opened");
    require_server!(
        "the_kernel_program_captures_answers_and_no_packet_socket_is_opened",
        "dnsmasq",
        "dnsmasq-base"
    );
    let doctor = netta_json(&["doctor", "--json"]);
    let capture = doctor["dns_capture"].as_str().unwrap_or("");
    // fentry, or the BTF tracepoints where the kernel refuses fentry.
    assert!(
        capture.starts_with("in the kernel (fentry:")
            || capture.starts_with("in the kernel (tp_btf:"),
        "{capture}"
    );
    let server: SocketAddr = "127.0.5.6:53".parse().unwrap();
    let _dns = Dnsmasq::start(None, "127.0.5.6", &[("kern-test.example", "127.0.0.81")]);
    let no_kernel_dns = ("NETTA_DISABLE_HOOKS", "fentry,tp_btf,cgroup_skb");
    for (env, fallback) in [(&[][..], false), (&[no_kernel_dns][..], true)] {
        let mut ev = Events::start_with_env(&[], &[], env);
        learned(&mut ev, ask_udp, server, "kern-test.example", "127.0.0.81");
        let packet = packet_socket_inodes();
        let held = socket_inodes(ev.pid())
            .into_iter()
            .filter(|i| packet.contains(i))
            .count();
        ev.stop();
        assert_eq!(held > 0, fallback, "packet sockets held by netta: {held}");
    }
}

/// Each fallback of the kernel capture catches answers over UDP and TCP: with
/// fentry ruled out (a kernel that refuses BPF trampolines), the BTF tracepoints
/// where the kernel has `sock:sk_data_ready` (6.5+), else the cgroup program; with
/// those ruled out too, the cgroup program.
#[test]
fn each_kernel_fallback_captures_answers_over_udp_and_tcp() {
    require_ebpf!("each_kernel_fallback_captures_answers_over_udp_and_tcp");
    require_server!(
        "each_kernel_fallback_captures_answers_over_udp_and_tcp",
        "dnsmasq",
        "dnsmasq-base"
    );
    let server: SocketAddr = "127.0.5.7:53".parse().unwrap();
    let _dns = Dnsmasq::start(
        None,
        "127.0.5.7",
        &[
            ("cg-udp.example", "127.0.0.82"),
            ("cg-tcp.example", "127.0.0.83"),
        ],
    );
    let tp_btf = std::path::Path::new("/sys/kernel/tracing/events/sock/sk_data_ready").exists();
    let passes = [
        (
            "fentry:__udp_enqueue_schedule_skb",
            if tp_btf { "tp_btf:" } else { "cgroup_skb" },
        ),
        (
            "fentry:__udp_enqueue_schedule_skb,tp_btf:sk_data_ready",
            "cgroup_skb",
        ),
    ];
    for (disabled, expected) in passes {
        let env = [("NETTA_DISABLE_HOOKS", disabled)];
        let out = netta_cmd()
            .args(["doctor", "--json"])
            .envs(env)
            .output()
            .unwrap();
        let doctor: Value = serde_json::from_slice(&out.stdout).unwrap();
        let capture = doctor["dns_capture"].as_str().unwrap_or("");
        assert!(capture.contains(expected), "{disabled}: {doctor:#}");
        let mut ev = Events::start_with_env(&[], &[], &env);
        learned(&mut ev, ask_udp, server, "cg-udp.example", "127.0.0.82");
        learned(&mut ev, ask_tcp, server, "cg-tcp.example", "127.0.0.83");
        let all = ev.stop();
        let tcp = dns_answer_for(&all, "cg-tcp.example").unwrap();
        assert_eq!(str_at(tcp, &["network", "transport"]), Some("tcp"));
    }
}

#[test]
fn no_dns_turns_it_off() {
    require_ebpf!("no_dns_turns_it_off");
    require_server!("no_dns_turns_it_off", "dnsmasq", "dnsmasq-base");
    let server: SocketAddr = "127.0.5.5:53".parse().unwrap();
    let _dns = Dnsmasq::start(None, "127.0.5.5", &[("off-test.example", "127.0.0.79")]);
    let mut ev = Events::start(&["--no-dns"], &[]);
    assert!(answers_with(
        &ask_udp(server, "off-test.example"),
        [127, 0, 0, 79]
    ));
    let port = free_tcp_port("127.0.0.79");
    connect_once("127.0.0.79", port);
    assert!(ev.wait_until(WAIT, |all| opened_to(all, "127.0.0.79", port).is_some()));
    let all = ev.stop();
    assert!(dns_answer_for(&all, "off-test.example").is_none());
    assert!(opened_to(&all, "127.0.0.79", port).unwrap()["destination"]["domain"].is_null());
}

/// Runs `f` on a thread inside network namespace `ns` (sockets it makes stay there).
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: setns on this thread only, with an fd we hold.
        assert_eq!(
            unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        f()
    })
    .join()
    .unwrap()
}

struct Netns(String);

impl Netns {
    fn create(name: &str) -> Netns {
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(Stdio::null())
            .status();
        assert!(Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .unwrap()
            .success());
        let up = Command::new("ip")
            .args(["-n", name, "link", "set", "lo", "up"])
            .status();
        assert!(up.unwrap().success());
        Netns(name.to_string())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn answers_inside_a_network_namespace_name_its_connections() {
    require_ebpf!("answers_inside_a_network_namespace_name_its_connections");
    require_server!(
        "answers_inside_a_network_namespace_name_its_connections",
        "dnsmasq",
        "dnsmasq-base"
    );
    let ns = Netns::create(&format!("netta-dns-{}", std::process::id()));
    let _dns = Dnsmasq::start(
        Some(&ns.0),
        "127.0.0.1",
        &[("ns-test.example", "127.0.0.80")],
    );
    let mut ev = Events::start(&[], &[]);
    let answer = in_netns(&ns.0, || {
        ask_udp("127.0.0.1:53".parse().unwrap(), "ns-test.example")
    });
    assert!(answers_with(&answer, [127, 0, 0, 80]));
    assert!(
        ev.wait_until(WAIT, |all| dns_answer_for(all, "ns-test.example").is_some()),
        "no dns-answer from inside the namespace (the capture rescans every 2 s)"
    );
    let port = 47_123;
    in_netns(&ns.0, move || connect_once("127.0.0.80", port));
    assert!(ev.wait_until(WAIT, |all| opened_to(all, "127.0.0.80", port).is_some()));
    let all = ev.stop();
    let answer = dns_answer_for(&all, "ns-test.example").unwrap();
    let own = std::fs::metadata("/proc/self/ns/net").map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.ino()
    });
    assert_ne!(
        answer["netta"]["netns"].as_u64(),
        own.ok(),
        "learned in the other namespace"
    );
    let opened = opened_to(&all, "127.0.0.80", port).unwrap();
    assert_eq!(
        str_at(opened, &["destination", "domain"]),
        Some("ns-test.example")
    );
}

/// A response header and question for `name`, then `rest` (answer records).
fn hostile(name: &[u8], ancount: u16, rest: &[u8]) -> Vec<u8> {
    let mut m = vec![0x66, 0x66, 0x81, 0x80, 0, 1];
    m.extend_from_slice(&ancount.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    m.extend_from_slice(name);
    m.extend_from_slice(&[0, 1, 0, 1]);
    m.extend_from_slice(rest);
    m
}

#[test]
fn hostile_dns_packets_never_crash_the_capture_nor_reach_output_raw() {
    require_ebpf!("hostile_dns_packets_never_crash_the_capture_nor_reach_output_raw");
    let mut ev = Events::start(&[], &[]);
    let from = UdpSocket::bind("127.0.5.4:53").unwrap();
    let to = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dst = to.local_addr().unwrap();
    let plain = b"\x01x\x07example\x00";
    let a = |owner: &[u8]| [owner, &[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 81]].concat();
    let mut long = Vec::new();
    for _ in 0..5 {
        long.push(63);
        long.extend_from_slice(&[b'a'; 63]);
    }
    long.push(0);
    let evil_name = b"\x09evil\x1b[2J\n\x01x\x07example\x00";
    // Where the first answer record starts: the header, the question name, type and class.
    let at = (12 + plain.len() + 4) as u8;
    let packets: Vec<Vec<u8>> = vec![
        // The owner points at itself: a compression loop.
        hostile(plain, 1, &[&[0xc0u8, at][..], &a(&[])[..]].concat()),
        // A name over 255 bytes.
        hostile(plain, 1, &a(&long)),
        // Cut off inside the record.
        hostile(plain, 1, &a(plain)[..8]),
        // A header only, then nothing at all.
        vec![0x66, 0x66, 0x81, 0x80, 0, 1, 0, 5],
        Vec::new(),
        // Well formed, but the name is made to drive a terminal.
        hostile(evil_name, 1, &a(evil_name)),
    ];
    for p in &packets {
        from.send_to(p, dst).unwrap();
    }
    // The capture is still there: a plain answer after them is learned.
    from.send_to(&hostile(plain, 1, &a(plain)), dst).unwrap();
    let escaped = "evil\\027[2j\\010.x.example";
    assert!(
        ev.wait_until(WAIT, |all| dns_answer_for(all, "x.example").is_some()),
        "the answer after the hostile packets was not learned"
    );
    let all = ev.stop();
    let evil = dns_answer_for(&all, escaped).expect("the hostile name, escaped");
    for line in &all {
        let text = line.to_string();
        let decoded = serde_json::from_str::<Value>(&text).unwrap().to_string();
        assert!(!decoded.contains('\u{1b}'), "{decoded}");
        if let Some(q) = str_at(line, &["dns", "question", "name"]) {
            assert!(q.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{q:?}");
        }
    }
    assert_eq!(
        evil["dns"]["resolved_ip"],
        serde_json::json!(["127.0.0.81"])
    );
}
