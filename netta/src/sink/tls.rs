//! TLS for `https://` sinks (rustls with the ring provider): the server's
//! certificate is verified against the system's roots, or against the CA file
//! the sink names (`#ca=FILE`, a private CA); a connection that fails either is
//! never retried in plaintext.
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A client for one sink: its trust roots and the name its server must have.
pub struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

fn ca_file_roots(path: &Path) -> Result<rustls::RootCertStore, String> {
    let bad = |why: String| format!("CA file {}: {why}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        roots.add(c).map_err(|e| bad(e.to_string()))?;
    }
    Ok(roots)
}

fn system_roots() -> Result<rustls::RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = found
            .errors
            .first()
            .map_or("none found".to_string(), |e| e.to_string());
        return Err(format!(
            "no system CA certificates ({why}); install ca-certificates or give the sink #ca=FILE"
        ));
    }
    Ok(roots)
}

impl Tls {
    /// Trust `ca` (PEM) if given, else the system's roots; verify the name `host`.
    /// Errors are one line, for the start-up error or the log.
    pub fn new(host: &str, ca: Option<&Path>) -> Result<Tls, String> {
        let roots = match ca {
            Some(path) => ca_file_roots(path)?,
            None => system_roots()?,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| format!("{host:?} cannot be checked against a certificate: {e}"))?;
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }

    /// The TLS handshake on `stream`; an unverified server is an error.
    pub async fn connect(&self, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        self.connector
            .connect(self.name.clone(), stream)
            .await
            .map_err(|e| {
                std::io::Error::other(format!(
                    "TLS handshake with {} failed: {e}",
                    self.name.to_str()
                ))
            })
    }
}
