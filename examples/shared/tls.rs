//! A rustls server configuration from PEM files, for the examples that serve `wss://`.
//! To try one without a certificate of your own, make a self-signed one:
//!
//! ```sh
//! openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=localhost \
//!     -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout key.pem -out cert.pem
//! ```

use std::io;
use std::path::Path;
use std::sync::Arc;

/// The certificate chain in `cert` and the private key in `key`, both PEM.
pub fn server_config(cert: &Path, key: &Path) -> io::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &Path, e: rustls::pki_types::pem::Error| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", what.display()))
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(cert, e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("certificate and key: {e}")))
}
