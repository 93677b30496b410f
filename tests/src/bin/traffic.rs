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
        "hold" => {
            set_name(arg(&args, 4));
            let to = addr(&args, 2);
            let held: Vec<TcpStream> = (0..num(&args, 3))
                .map(|_| TcpStream::connect(to).expect("connect"))
                .collect();
            for s in &held {
                writeln!(out, "local {}", s.local_addr().unwrap().port()).unwrap();
            }
            writeln!(out, "held").unwrap();
            out.flush().unwrap();
            wait_stdin_eof();
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
        other => {
            eprintln!("netta-traffic: unknown mode {other}");
            std::process::exit(2);
        }
    }
}
