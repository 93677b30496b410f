//! An HTTP(S) collector for the HTTP sink's tests: it takes NDJSON POSTs and
//! keeps their lines, answers 200 once a body is whole, can go away and come
//! back on the same port, and over TLS serves a certificate made by a private
//! CA (rcgen) for `localhost` and 127.0.0.1.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A private CA and a server certificate it signed.
pub struct Pki {
    /// The CA's certificate, PEM: what `#ca=FILE` trusts.
    pub ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

impl Pki {
    /// A new CA (named `name`) and a certificate for `localhost` / 127.0.0.1.
    pub fn new(name: &str) -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("netta test CA {name}"));
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], der)
            .unwrap();
        Pki {
            ca_pem: ca.pem(),
            server: Arc::new(server),
        }
    }

    /// Writes the CA certificate to `path`.
    pub fn write_ca(&self, path: &Path) {
        std::fs::write(path, &self.ca_pem).unwrap();
    }
}

#[derive(Default)]
struct Seen {
    lines: Vec<String>,
    requests: u64,
    /// TLS handshakes that failed, and what rustls said.
    tls_errors: Vec<String>,
    /// Connections whose first bytes were plaintext HTTP on a TLS port.
    plaintext: u64,
}

struct Inner {
    seen: Mutex<Seen>,
    /// Set while the receiver is down; checked under `seen`'s lock before a
    /// body is kept, so a batch is either kept and answered, or neither.
    down: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// The collector; stopped when dropped.
pub struct HttpReceiver {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    accepting: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
}

impl HttpReceiver {
    /// Plain HTTP on a free loopback port.
    pub fn start() -> HttpReceiver {
        HttpReceiver::bind("127.0.0.1:0".parse().unwrap(), None)
    }

    /// HTTPS with `pki`'s server certificate.
    pub fn start_tls(pki: &Pki) -> HttpReceiver {
        HttpReceiver::bind("127.0.0.1:0".parse().unwrap(), Some(pki.server.clone()))
    }

    fn bind(addr: SocketAddr, tls: Option<Arc<rustls::ServerConfig>>) -> HttpReceiver {
        let inner = Arc::new(Inner {
            seen: Mutex::new(Seen::default()),
            down: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
            tls,
        });
        let mut r = HttpReceiver {
            addr,
            inner,
            accepting: None,
        };
        r.listen(addr);
        r
    }

    fn listen(&mut self, addr: SocketAddr) {
        let listener = rebind(addr);
        self.addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (inner, stop2) = (self.inner.clone(), stop.clone());
        let t = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        inner.conns.lock().unwrap().push(s.try_clone().unwrap());
                        let inner = inner.clone();
                        std::thread::spawn(move || serve(&inner, s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        self.inner.down.store(false, Ordering::SeqCst);
        self.accepting = Some((stop, t));
    }

    /// Goes away: no more connections accepted, the open ones closed, nothing
    /// more kept (a body that was being read is not answered).
    pub fn stop(&mut self) {
        {
            let _held = self.inner.seen.lock().unwrap();
            self.inner.down.store(true, Ordering::SeqCst);
        }
        if let Some((stop, t)) = self.accepting.take() {
            stop.store(true, Ordering::SeqCst);
            t.join().unwrap();
        }
        for c in self.inner.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Comes back on the same port.
    pub fn restart(&mut self) {
        self.listen(self.addr);
    }

    /// Every line received so far.
    pub fn lines(&self) -> Vec<String> {
        self.inner.seen.lock().unwrap().lines.clone()
    }

    pub fn requests(&self) -> u64 {
        self.inner.seen.lock().unwrap().requests
    }

    pub fn tls_errors(&self) -> Vec<String> {
        self.inner.seen.lock().unwrap().tls_errors.clone()
    }

    pub fn plaintext_attempts(&self) -> u64 {
        self.inner.seen.lock().unwrap().plaintext
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn rebind(addr: SocketAddr) -> TcpListener {
    let start = std::time::Instant::now();
    loop {
        match TcpListener::bind(addr) {
            Ok(l) => return l,
            Err(e) if start.elapsed() < Duration::from_secs(30) => {
                eprintln!("rebinding {addr}: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("rebinding {addr}: {e}"),
        }
    }
}

fn serve(inner: &Inner, s: TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    match &inner.tls {
        None => requests(inner, s),
        Some(cfg) => {
            let mut first = [0u8; 1];
            if s.peek(&mut first).is_ok_and(|n| n == 1) && first[0].is_ascii_alphabetic() {
                inner.seen.lock().unwrap().plaintext += 1;
                return;
            }
            let mut conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
            let mut sock = s;
            while conn.is_handshaking() {
                if let Err(e) = conn.complete_io(&mut sock) {
                    inner.seen.lock().unwrap().tls_errors.push(e.to_string());
                    return;
                }
            }
            requests(inner, rustls::StreamOwned::new(conn, sock));
        }
    }
}

/// Reads requests until the peer closes; keeps each whole body's lines and answers 200.
fn requests(inner: &Inner, stream: impl Read + Write) {
    let mut r = BufReader::new(stream);
    loop {
        let mut length = None;
        let mut first = true;
        loop {
            let mut h = String::new();
            match r.read_line(&mut h) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let h = h.trim_end();
            if first {
                assert!(h.starts_with("POST "), "not a POST: {h:?}");
                first = false;
            } else if h.is_empty() {
                break;
            } else if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse::<usize>().ok();
                }
            }
        }
        let mut body = vec![0; length.expect("a Content-Length")];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        {
            let mut seen = inner.seen.lock().unwrap();
            if inner.down.load(Ordering::SeqCst) {
                return;
            }
            let text = String::from_utf8(body).expect("UTF-8 NDJSON");
            seen.lines.extend(text.lines().map(str::to_string));
            seen.requests += 1;
            let out = r.get_mut();
            if out
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .and_then(|_| out.flush())
                .is_err()
            {
                return;
            }
        }
    }
}
