//! TLS on the TCP listeners, as dockerd: `--tls` (server certificate only), `--tlsverify`
//! (clients must present a certificate signed by `--tlscacert`), rustls with the ring
//! provider. Plus `berth daemon --tls-generate DIR`: a CA and server/client certificates for a
//! first setup, in the file names Docker's documentation uses.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The TLS settings of the TCP listeners.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// `--tlsverify`: require and verify client certificates against `ca`.
    pub verify_clients: bool,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn read_certs(what: &str, p: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let iter = CertificateDer::pem_file_iter(p)
        .map_err(|e| format!("could not read {what} \"{}\": {e}", p.display()))?;
    let certs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("could not read {what} \"{}\": {e}", p.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "could not read {what} \"{}\": no certificate in it",
            p.display()
        ));
    }
    Ok(certs)
}

/// The rustls server configuration for `files`; errors name the file, as dockerd's do.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs("X509 key pair certificate", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        format!(
            "could not read X509 key pair key \"{}\": {e}",
            files.key.display()
        )
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("invalid TLS configuration: {e}"))?;
    let builder = if files.verify_clients {
        let mut roots = rustls::RootCertStore::empty();
        for c in read_certs("CA certificate", &files.ca)? {
            roots
                .add(c)
                .map_err(|e| format!("invalid CA certificate \"{}\": {e}", files.ca.display()))?;
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("invalid TLS configuration: {e}"))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("invalid TLS configuration: {e}"))?;
    // API clients are mostly one-shot CLI processes that never resume a session: issuing
    // tickets would cost every handshake for nothing.
    cfg.send_tls13_tickets = 0;
    Ok(Arc::new(cfg))
}

/// What `--tls-generate` wrote.
#[derive(Debug)]
pub struct Generated {
    pub dir: PathBuf,
    pub names: Vec<String>,
}

/// The files `--tls-generate` writes, Docker's documented names: the CA, the daemon's pair,
/// the client's pair (what `DOCKER_CERT_PATH` expects: ca.pem, cert.pem, key.pem).
pub const GENERATED_FILES: [&str; 6] = [
    "ca.pem",
    "ca-key.pem",
    "server-cert.pem",
    "server-key.pem",
    "cert.pem",
    "key.pem",
];

/// Writes a new CA (10 years), a server certificate for `hosts` (plus localhost, 127.0.0.1,
/// ::1 and this machine's hostname) and a client certificate (both 3 years) into `dir`.
/// Refuses to overwrite any existing file. Private keys are mode 0600.
pub fn generate(dir: &Path, hosts: &[String]) -> Result<Generated, String> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose, SanType,
    };
    use std::net::IpAddr;
    for n in GENERATED_FILES {
        let p = dir.join(n);
        if p.exists() {
            return Err(format!(
                "{} already exists: remove it or choose another directory",
                p.display()
            ));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let err = |e: rcgen::Error| format!("generating certificates: {e}");
    let today = chrono::Utc::now().date_naive();
    let ymd = |d: chrono::NaiveDate| {
        use chrono::Datelike;
        rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
    };
    let from = ymd(today - chrono::Duration::days(1));
    let years = |n: i32| {
        use chrono::Datelike;
        // Feb 29 has no twin in most years: the day before it then.
        ymd(today
            .with_year(today.year() + n)
            .unwrap_or(today - chrono::Duration::days(1)))
    };

    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name.push(DnType::CommonName, "Berth CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = from;
    ca.not_after = years(10);
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca, &ca_key);

    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty());
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    names.extend(hostname.clone());
    for h in hosts {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(h)) {
            names.push(h.clone());
        }
    }
    let mut sans = Vec::new();
    for n in &names {
        sans.push(match n.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                n.clone()
                    .try_into()
                    .map_err(|_| format!("invalid host name for the certificate: {n:?}"))?,
            ),
        });
    }
    let server_key = KeyPair::generate().map_err(err)?;
    let mut server = CertificateParams::default();
    server.distinguished_name = rcgen::DistinguishedName::new();
    server.distinguished_name.push(
        DnType::CommonName,
        hosts
            .first()
            .cloned()
            .or(hostname)
            .unwrap_or_else(|| "localhost".into()),
    );
    server.subject_alt_names = sans;
    server.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.use_authority_key_identifier_extension = true;
    server.not_before = from;
    server.not_after = years(3);
    let server_cert = server.signed_by(&server_key, &issuer).map_err(err)?;

    let client_key = KeyPair::generate().map_err(err)?;
    let mut client = CertificateParams::default();
    client.distinguished_name = rcgen::DistinguishedName::new();
    client
        .distinguished_name
        .push(DnType::CommonName, "berth client");
    client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    client.use_authority_key_identifier_extension = true;
    client.not_before = from;
    client.not_after = years(3);
    let client_cert = client.signed_by(&client_key, &issuer).map_err(err)?;

    let files: [(&str, String, u32); 6] = [
        ("ca.pem", ca_cert.pem(), 0o644),
        ("ca-key.pem", ca_key.serialize_pem(), 0o600),
        ("server-cert.pem", server_cert.pem(), 0o644),
        ("server-key.pem", server_key.serialize_pem(), 0o600),
        ("cert.pem", client_cert.pem(), 0o644),
        ("key.pem", client_key.serialize_pem(), 0o600),
    ];
    for (name, text, mode) in &files {
        let p = dir.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(*mode)
            .open(&p)
            .map_err(|e| format!("writing {}: {e}", p.display()))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("writing {}: {e}", p.display()))?;
    }
    Ok(Generated {
        dir: dir.to_path_buf(),
        names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files_make_a_working_server_config_and_are_never_overwritten() {
        let t = tempfile::tempdir().expect("tmp");
        let g = generate(t.path(), &["node1.example".into(), "10.1.2.3".into()]).expect("gen");
        assert!(g.names.contains(&"node1.example".to_string()));
        assert!(g.names.contains(&"127.0.0.1".to_string()));
        use std::os::unix::fs::PermissionsExt;
        for n in GENERATED_FILES {
            let m = std::fs::metadata(t.path().join(n)).expect(n);
            let want = if n.ends_with("key.pem") { 0o600 } else { 0o644 };
            assert_eq!(m.permissions().mode() & 0o777, want, "{n}");
        }
        let files = TlsFiles {
            verify_clients: true,
            ca: t.path().join("ca.pem"),
            cert: t.path().join("server-cert.pem"),
            key: t.path().join("server-key.pem"),
        };
        server_config(&files).expect("server config");
        let e = generate(t.path(), &[]).expect_err("exists");
        assert!(e.contains("already exists"), "{e}");
        // A missing file is named in the error.
        let e = server_config(&TlsFiles {
            ca: t.path().join("nope.pem"),
            ..files
        })
        .expect_err("missing CA");
        assert!(e.contains("nope.pem"), "{e}");
    }
}
