//! TLS for the client's TCP connections, with the docker CLI's meaning of its options:
//! `verify` checks the daemon's certificate against `ca` (and its name against the host);
//! without it any certificate is accepted (`--tls` alone). A client certificate is presented
//! when `cert` and `key` are given. rustls with the ring provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};

use crate::client::ApiError;

/// What the CLI's `--tls*` flags and `DOCKER_TLS_VERIFY`/`DOCKER_CERT_PATH` resolve to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Verify the daemon's certificate (`--tlsverify`).
    pub verify: bool,
    /// The CA to trust (`--tlscacert`); only read when `verify`.
    pub ca: Option<PathBuf>,
    /// The client certificate and key (`--tlscert`, `--tlskey`).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

fn load_err(what: &str, p: &Path, e: impl std::fmt::Display) -> ApiError {
    ApiError::Tls(format!("could not read {what} \"{}\": {e}", p.display()))
}

/// The rustls client configuration for `opts`.
pub fn client_config(opts: &TlsOptions) -> Result<Arc<rustls::ClientConfig>, ApiError> {
    let mut provider = rustls::crypto::ring::default_provider();
    // AES-128-GCM/SHA-256 first (as Go's client orders them): SHA-256 has CPU instructions,
    // SHA-384 does not, and the key schedule hashes on every handshake.
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    let provider = Arc::new(provider);
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ApiError::Tls(e.to_string()))?;
    let builder = if opts.verify {
        let mut roots = rustls::RootCertStore::empty();
        let ca = opts.ca.as_deref().ok_or_else(|| {
            ApiError::Tls("--tlsverify needs a CA certificate (--tlscacert)".into())
        })?;
        let certs = CertificateDer::pem_file_iter(ca)
            .map_err(|e| load_err("CA certificate", ca, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| load_err("CA certificate", ca, e))?;
        if certs.is_empty() {
            return Err(load_err("CA certificate", ca, "no certificate in it"));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| load_err("CA certificate", ca, e))?;
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
    };
    let mut cfg = match (&opts.cert, &opts.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| load_err("client certificate", cert, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| load_err("client certificate", cert, e))?;
            let k =
                PrivateKeyDer::from_pem_file(key).map_err(|e| load_err("client key", key, e))?;
            builder
                .with_client_auth_cert(chain, k)
                .map_err(|e| ApiError::Tls(format!("invalid client certificate or key: {e}")))?
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(ApiError::Tls(
                "a client certificate needs both --tlscert and --tlskey".into(),
            ))
        }
        (None, None) => builder.with_no_client_auth(),
    };
    // One process talks to one daemon once or twice: nothing to resume later.
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(cfg))
}

/// The server name to check the daemon's certificate against: the host of `host:port`.
pub fn server_name(addr: &str) -> Result<ServerName<'static>, ApiError> {
    let host = match addr.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h,
        _ => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|e| ApiError::Tls(format!("invalid host name {host:?}: {e}")))
}

/// `--tls` without `--tlsverify`: the docker CLI's `InsecureSkipVerify`. The handshake
/// signatures are still checked (the peer must hold the key of the certificate it sent).
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        assert!(matches!(
            server_name("127.0.0.1:2376"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("[::1]:2376"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("node1.example:2376"),
            Ok(ServerName::DnsName(_))
        ));
    }

    #[test]
    fn options_are_checked() {
        assert!(client_config(&TlsOptions::default()).is_ok());
        let e = client_config(&TlsOptions {
            verify: true,
            ca: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        })
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        assert!(client_config(&TlsOptions {
            cert: Some("/x".into()),
            ..Default::default()
        })
        .is_err());
    }
}
