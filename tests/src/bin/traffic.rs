//! Traffic generator for netta's end-to-end tests. Each mode runs as its own
//! process with its own name (set with PR_SET_NAME), so tests can check that netta
//! attributes every socket to the right process.
//!
//! Modes (all print machine-readable lines on stdout):
//!   tcp-server ADDR COUNT REPLY_BYTES NAME   prints `port P`, serves COUNT connections
//!   tcp-client ADDR COUNT SEND_BYTES NAME    prints `local P` per connection, then `done`
//!   hold ADDR COUNT NAME                     opens COUNT connections, prints `held`, waits for stdin EOF
//!   udp-server ADDR NAME                     prints `port P`, receives until stdin EOF
//!   udp-send ADDR COUNT BYTES NAME           unconnected sendto; prints `local P`
//!   connect ADDR NAME                        one connect, prints `refused` or `connected`
//!   hold-from SRC_IP ADDR COUNT NAME         like hold, from local address SRC_IP (IPv4)
//!   scan IP FIRST_PORT LAST_PORT NAME        connect scan: one short connect per port, prints
//!                                            `open P` per open port, then `done N` (ports tried)
//!   http-server ADDR NAME                    prints `port P`, answers every HTTP/1.0 request
//!                                            with `ok` (a thread per connection) until killed
//!   http-get ADDR COUNT THREADS NAME         COUNT requests over THREADS threads, a connection
//!                                            each; prints `done N` (responses that were `ok`)
//!   syn SRC_IP DST_IP FIRST_PORT LAST_PORT COUNT INTERVAL_US NAME
//!                                            raw IPv4 SYNs from SRC_IP (may be spoofed), cycling
//!                                            over the ports, COUNT in all; prints `sent N`
//!   beacon ADDR COUNT PERIOD_MS JITTER_PCT NAME
//!                                            COUNT short connections PERIOD_MS ± JITTER_PCT % apart;
//!                                            prints `done N`
//!   paced-send ADDR BYTES_PER_SEC SECONDS NAME
//!                                            one connection sending at about that rate (in 10 ms
//!                                            steps) for that long; prints `local P` once connected,
//!                                            `sent N` when done, then waits for the peer to close
//!   scatter ADDR COUNT MIN_MS MAX_MS NAME    COUNT short connections at random gaps, spread
//!                                            log-uniformly over MIN_MS..MAX_MS; prints `done N`
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};

fn set_name(name: &str) {
    let mut buf = [0u8; 16];
    let n = name.len().min(15);
    buf[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: PR_SET_NAME reads a NUL-terminated buffer of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, buf.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

fn arg(args: &[String], i: usize) -> &str {
    args.get(i).map(String::as_str).unwrap_or_else(|| {
        eprintln!("netta-traffic: missing argument {i}");
        std::process::exit(2)
    })
}

fn num(args: &[String], i: usize) -> usize {
    arg(args, i).parse().unwrap_or_else(|_| {
        eprintln!("netta-traffic: argument {i} is not a number");
        std::process::exit(2)
    })
}

fn addr(args: &[String], i: usize) -> SocketAddr {
    arg(args, i).parse().unwrap_or_else(|_| {
        eprintln!("netta-traffic: argument {i} is not an address");
        std::process::exit(2)
    })
}

/// Reports the held connections' local ports, then keeps them until stdin closes.
fn hold_until_eof(out: &mut impl Write, held: &[TcpStream]) {
    for s in held {
        writeln!(out, "local {}", s.local_addr().unwrap().port()).unwrap();
    }
    writeln!(out, "held").unwrap();
    out.flush().unwrap();
    wait_stdin_eof();
}

/// xorshift64*: enough randomness for traffic timing, no dependency.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Rng((t ^ (u64::from(std::process::id()) << 32)) | 1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn wait_stdin_eof() {
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut out = std::io::stdout();
    match arg(&args, 1) {
        "tcp-server" => {
            set_name(arg(&args, 5));
            let l = TcpListener::bind(addr(&args, 2)).expect("bind");
            writeln!(out, "port {}", l.local_addr().unwrap().port()).unwrap();
            out.flush().unwrap();
            let reply = vec![b'r'; num(&args, 4)];
            for _ in 0..num(&args, 3) {
                let (mut s, _) = l.accept().expect("accept");
                let mut req = Vec::new();
                s.read_to_end(&mut req).expect("read request");
                s.write_all(&reply).expect("reply");
            }
        }
        "tcp-client" => {
            set_name(arg(&args, 5));
            let to = addr(&args, 2);
            let body = vec![b'q'; num(&args, 4)];
            let mut ports = Vec::new();
            for _ in 0..num(&args, 3) {
                let mut s = TcpStream::connect(to).expect("connect");
                ports.push(s.local_addr().unwrap().port());
                s.write_all(&body).expect("send");
                s.shutdown(std::net::Shutdown::Write).expect("shutdown");
                let mut reply = Vec::new();
                s.read_to_end(&mut reply).expect("read reply");
            }
            for p in ports {
                writeln!(out, "local {p}").unwrap();
            }
            writeln!(out, "done").unwrap();
        }
        "paced-send" => {
            set_name(arg(&args, 5));
            let mut s = TcpStream::connect(addr(&args, 2)).expect("connect");
            writeln!(out, "local {}", s.local_addr().unwrap().port()).unwrap();
            out.flush().unwrap();
            let rate = num(&args, 3);
            let secs = num(&args, 4) as u64;
            let step = std::time::Duration::from_millis(10);
            let chunk = vec![b'p'; (rate / 100).max(1)];
            let start = std::time::Instant::now();
            let mut sent = 0usize;
            let mut next = start;
            while start.elapsed() < std::time::Duration::from_secs(secs) {
                s.write_all(&chunk).expect("send");
                sent += chunk.len();
                next += step;
                if let Some(wait) = next.checked_duration_since(std::time::Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            writeln!(out, "sent {sent}").unwrap();
            out.flush().unwrap();
            s.shutdown(std::net::Shutdown::Write).expect("shutdown");
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        }
        "hold" => {
            set_name(arg(&args, 4));
            let to = addr(&args, 2);
            let held: Vec<TcpStream> = (0..num(&args, 3))
                .map(|_| TcpStream::connect(to).expect("connect"))
                .collect();
            hold_until_eof(&mut out, &held);
        }
        "udp-server" => {
            set_name(arg(&args, 3));
            let s = UdpSocket::bind(addr(&args, 2)).expect("bind");
            writeln!(out, "port {}", s.local_addr().unwrap().port()).unwrap();
            out.flush().unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while s.recv(&mut buf).is_ok() {}
            });
            wait_stdin_eof();
        }
        "udp-send" => {
            set_name(arg(&args, 5));
            let to = addr(&args, 2);
            let bind: SocketAddr = if to.is_ipv4() {
                "0.0.0.0:0".parse().unwrap()
            } else {
                "[::]:0".parse().unwrap()
            };
            let s = UdpSocket::bind(bind).expect("bind");
            let body = vec![b'd'; num(&args, 4)];
            for _ in 0..num(&args, 3) {
                s.send_to(&body, to).expect("sendto");
            }
            writeln!(out, "local {}", s.local_addr().unwrap().port()).unwrap();
        }
        "connect" => {
            set_name(arg(&args, 3));
            match TcpStream::connect(addr(&args, 2)) {
                Ok(_) => writeln!(out, "connected").unwrap(),
                Err(_) => writeln!(out, "refused").unwrap(),
            }
        }
        "hold-from" => {
            set_name(arg(&args, 5));
            let src: std::net::Ipv4Addr = arg(&args, 2).parse().unwrap_or_else(|_| {
                eprintln!("netta-traffic: argument 2 is not an IPv4 address");
                std::process::exit(2)
            });
            let to = addr(&args, 3);
            let held: Vec<TcpStream> = (0..num(&args, 4))
                .map(|_| connect_from(src, to).expect("connect"))
                .collect();
            hold_until_eof(&mut out, &held);
        }
        "scan" => {
            set_name(arg(&args, 5));
            let ip: std::net::IpAddr = arg(&args, 2).parse().unwrap_or_else(|_| {
                eprintln!("netta-traffic: argument 2 is not an IP address");
                std::process::exit(2)
            });
            let (first, last) = (num(&args, 3) as u16, num(&args, 4) as u16);
            let mut tried = 0;
            for port in first..=last {
                let to = SocketAddr::new(ip, port);
                if TcpStream::connect_timeout(&to, std::time::Duration::from_millis(200)).is_ok() {
                    writeln!(out, "open {port}").unwrap();
                }
                tried += 1;
            }
            writeln!(out, "done {tried}").unwrap();
        }
        "http-server" => {
            set_name(arg(&args, 3));
            let l = TcpListener::bind(addr(&args, 2)).expect("bind");
            writeln!(out, "port {}", l.local_addr().unwrap().port()).unwrap();
            out.flush().unwrap();
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                std::thread::spawn(move || {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = s.write_all(
                        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    );
                });
            }
        }
        "http-get" => {
            set_name(arg(&args, 5));
            let to = addr(&args, 2);
            let (count, threads) = (num(&args, 3), num(&args, 4).max(1));
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let n = count / threads + usize::from(t < count % threads);
                    std::thread::spawn(move || {
                        let mut ok = 0;
                        for _ in 0..n {
                            let Ok(mut s) = TcpStream::connect(to) else {
                                continue;
                            };
                            let req = format!("GET / HTTP/1.0\r\nHost: {to}\r\n\r\n");
                            let mut reply = Vec::new();
                            if s.write_all(req.as_bytes()).is_ok()
                                && s.read_to_end(&mut reply).is_ok()
                                && reply.ends_with(b"\r\n\r\nok")
                            {
                                ok += 1;
                            }
                        }
                        ok
                    })
                })
                .collect();
            let ok: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
            writeln!(out, "done {ok}").unwrap();
        }
        "syn" => {
            set_name(arg(&args, 8));
            let ip = |i: usize| -> std::net::Ipv4Addr {
                arg(&args, i).parse().unwrap_or_else(|_| {
                    eprintln!("netta-traffic: argument {i} is not an IPv4 address");
                    std::process::exit(2)
                })
            };
            let (src, dst) = (ip(2), ip(3));
            let (first, last) = (num(&args, 4) as u16, num(&args, 5) as u16);
            let (count, interval) = (num(&args, 6), num(&args, 7) as u64);
            let sent = raw_syns(src, dst, first, last, count, interval);
            writeln!(out, "sent {sent}").unwrap();
        }
        "beacon" | "scatter" => {
            set_name(arg(&args, 6));
            let to = addr(&args, 2);
            let (a, b) = (num(&args, 4) as f64, num(&args, 5) as f64);
            let mut rng = Rng::seeded();
            let count = num(&args, 3);
            for i in 0..count {
                if i > 0 {
                    let ms = if arg(&args, 1) == "beacon" {
                        a * (1.0 + b / 100.0 * (2.0 * rng.unit() - 1.0))
                    } else {
                        (a.ln() + (b.ln() - a.ln()) * rng.unit()).exp()
                    };
                    std::thread::sleep(std::time::Duration::from_secs_f64(ms / 1000.0));
                }
                let mut s = TcpStream::connect(to).expect("connect");
                s.shutdown(std::net::Shutdown::Write).expect("shutdown");
                let mut reply = Vec::new();
                let _ = s.read_to_end(&mut reply);
            }
            writeln!(out, "done {count}").unwrap();
        }
        other => {
            eprintln!("netta-traffic: unknown mode {other}");
            std::process::exit(2);
        }
    }
}

/// The Internet checksum (RFC 1071) of `parts` concatenated (each of even length
/// except possibly the last).
fn inet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    let mut bytes = parts.iter().flat_map(|p| p.iter().copied());
    loop {
        match (bytes.next(), bytes.next()) {
            (Some(a), Some(b)) => sum += u32::from(u16::from_be_bytes([a, b])),
            (Some(a), None) => sum += u32::from(u16::from_be_bytes([a, 0])),
            _ => break,
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// One IPv4 + TCP SYN packet (no options) with valid checksums.
fn syn_packet(
    src: std::net::Ipv4Addr,
    dst: std::net::Ipv4Addr,
    sport: u16,
    dport: u16,
    seq: u32,
) -> [u8; 40] {
    let mut p = [0u8; 40];
    // IPv4 header: version 4, IHL 5, total length 40, DF, TTL 64, protocol TCP.
    p[0] = 0x45;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    p[4..6].copy_from_slice(&(seq as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = libc::IPPROTO_TCP as u8;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let ip_sum = inet_checksum(&[&p[..20]]);
    p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    // TCP header: data offset 5, SYN, window 64240.
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[24..28].copy_from_slice(&seq.to_be_bytes());
    p[32] = 5 << 4;
    p[33] = 0x02;
    p[34..36].copy_from_slice(&64240u16.to_be_bytes());
    let mut pseudo = [0u8; 12];
    pseudo[..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&dst.octets());
    pseudo[9] = libc::IPPROTO_TCP as u8;
    pseudo[10..12].copy_from_slice(&20u16.to_be_bytes());
    let tcp_sum = inet_checksum(&[&pseudo, &p[20..]]);
    p[36..38].copy_from_slice(&tcp_sum.to_be_bytes());
    p
}

/// Sends `count` raw SYNs from `src` (any address: the kernel does not check it)
/// to `dst`, cycling over ports `first..=last`, `interval_us` apart. Returns how
/// many were sent.
fn raw_syns(
    src: std::net::Ipv4Addr,
    dst: std::net::Ipv4Addr,
    first: u16,
    last: u16,
    count: usize,
    interval_us: u64,
) -> usize {
    // SAFETY: plain socket(2); IPPROTO_RAW implies IP_HDRINCL.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if fd < 0 {
        eprintln!(
            "netta-traffic: raw socket: {}",
            std::io::Error::last_os_error()
        );
        std::process::exit(1);
    }
    let to = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(dst.octets()),
        },
        sin_zero: [0; 8],
    };
    let span = usize::from(last.saturating_sub(first)) + 1;
    let mut sent = 0;
    let seed = std::process::id();
    for i in 0..count {
        let dport = first + (i % span) as u16;
        // Distinct source ports, so every SYN is a new half-open connection.
        let sport = 20_000 + ((seed as usize + i) % 40_000) as u16;
        let seq = seed
            .wrapping_mul(2_654_435_761)
            .wrapping_add(i as u32 * 7919);
        let p = syn_packet(src, dst, sport, dport, seq);
        // SAFETY: `p` and `to` are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                fd,
                p.as_ptr().cast(),
                p.len(),
                0,
                (&to as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if n == p.len() as isize {
            sent += 1;
        }
        if interval_us > 0 {
            std::thread::sleep(std::time::Duration::from_micros(interval_us));
        }
    }
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    sent
}

fn sockaddr_v4(a: std::net::SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

/// A TCP connection to `to` from local address `src` (any port).
fn connect_from(src: std::net::Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(to) = to else {
        return Err(std::io::Error::other("IPv4 only"));
    };
    // SAFETY: plain socket(2); the descriptor is owned by the TcpStream below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new socket we own.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let from = sockaddr_v4(std::net::SocketAddrV4::new(src, 0));
    // SAFETY: `from` is a valid sockaddr_in of `len` bytes.
    if unsafe { libc::bind(fd, (&from as *const libc::sockaddr_in).cast(), len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let dst = sockaddr_v4(to);
    // SAFETY: `dst` is a valid sockaddr_in of `len` bytes.
    if unsafe { libc::connect(fd, (&dst as *const libc::sockaddr_in).cast(), len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stream)
}
