//! The daemon's certificates: a CA made on first start, a server certificate for the
//! addresses it listens on, and the admin's client certificate the kubeconfig carries.
//! Files live in `<data-dir>/pki`, readable by root only.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors making or loading certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("make {what}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("TLS configuration")]
    Tls(#[source] rustls::Error),
    #[error("client verifier")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
}

/// The PEM material of one start.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_pem: String,
    pub server_cert_pem: String,
    server_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a file only root reads (created 0600, so it is never readable by others).
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(contents).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)).map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

fn gen(what: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
    move |source| PkiError::Generate { what, source }
}

impl Pki {
    /// Loads the PKI of `dir`, or makes a new one when it is missing or was made for
    /// other server names (a new listen address).
    pub fn load_or_create(dir: &Path, server_names: &[String]) -> Result<Self, PkiError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
        let names_file = dir.join("server-names");
        let wanted = server_names.join("\n");
        let read = |n: &str| fs::read_to_string(dir.join(n));
        if let (Ok(names), Ok(ca), Ok(sc), Ok(sk), Ok(ac), Ok(ak)) = (
            fs::read_to_string(&names_file),
            read("ca.crt"),
            read("server.crt"),
            read("server.key"),
            read("admin.crt"),
            read("admin.key"),
        ) {
            if names == wanted {
                return Ok(Pki {
                    ca_pem: ca,
                    server_cert_pem: sc,
                    server_key_pem: sk,
                    admin_cert_pem: ac,
                    admin_key_pem: ak,
                });
            }
        }
        let pki = Self::generate(server_names)?;
        for (n, c) in [
            ("ca.crt", &pki.ca_pem),
            ("server.crt", &pki.server_cert_pem),
            ("server.key", &pki.server_key_pem),
            ("admin.crt", &pki.admin_cert_pem),
            ("admin.key", &pki.admin_key_pem),
        ] {
            write_private(&dir.join(n), c.as_bytes())?;
        }
        write_private(&names_file, wanted.as_bytes())?;
        Ok(pki)
    }

    /// A new CA, a server certificate for `server_names` (IPs or DNS names) and an admin
    /// client certificate (`CN=oxivirt-admin`, `O=system:masters`, as a cluster's admin).
    pub fn generate(server_names: &[String]) -> Result<Self, PkiError> {
        let ca_key = rcgen::KeyPair::generate().map_err(gen("CA key"))?;
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(gen("CA"))?;
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "oxivirt-ca");
        ca.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        ca.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let ca_cert = ca.self_signed(&ca_key).map_err(gen("CA certificate"))?;
        let issuer = rcgen::Issuer::new(ca, ca_key);

        let server_key = rcgen::KeyPair::generate().map_err(gen("server key"))?;
        let mut sp =
            rcgen::CertificateParams::new(server_names.to_vec()).map_err(gen("server names"))?;
        sp.distinguished_name
            .push(rcgen::DnType::CommonName, "oxivirtd");
        sp.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        sp.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let server = sp
            .signed_by(&server_key, &issuer)
            .map_err(gen("server certificate"))?;

        let admin_key = rcgen::KeyPair::generate().map_err(gen("admin key"))?;
        let mut ap = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(gen("admin"))?;
        ap.distinguished_name
            .push(rcgen::DnType::CommonName, "oxivirt-admin");
        ap.distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:masters");
        ap.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        ap.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let admin = ap
            .signed_by(&admin_key, &issuer)
            .map_err(gen("admin certificate"))?;
        Ok(Pki {
            ca_pem: ca_cert.pem(),
            server_cert_pem: server.pem(),
            server_key_pem: server_key.serialize_pem(),
            admin_cert_pem: admin.pem(),
            admin_key_pem: admin_key.serialize_pem(),
        })
    }

    /// The TLS server configuration: this PKI's server certificate; client certificates
    /// verified against its CA but not required at the handshake (a request without one
    /// gets a 401 `Status`, as from the API server, instead of a TLS alert).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let bad_pem = |what: &str| PkiError::Io {
            path: PathBuf::from(what),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "bad PEM"),
        };
        let ca = CertificateDer::from_pem_slice(self.ca_pem.as_bytes())
            .map_err(|_| bad_pem("ca.crt"))?;
        roots.add(ca).map_err(PkiError::Tls)?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(PkiError::Verifier)?;
        let cert = CertificateDer::from_pem_slice(self.server_cert_pem.as_bytes())
            .map_err(|_| bad_pem("server.crt"))?;
        let key = PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes())
            .map_err(|_| bad_pem("server.key"))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(PkiError::Tls)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![cert], key)
            .map_err(PkiError::Tls)?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// An admin kubeconfig for `server` (`https://127.0.0.1:6444`).
    pub fn kubeconfig(&self, server: &str) -> String {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: oxivirt\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: oxivirt-admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: oxivirt\n  context:\n    cluster: oxivirt\n    user: oxivirt-admin\n    namespace: default\ncurrent-context: oxivirt\npreferences: {{}}\n",
            b64(&self.ca_pem),
            b64(&self.admin_cert_pem),
            b64(&self.admin_key_pem)
        )
    }
}

/// A CA kept outside this process (a cluster Secret) that issues the certificates of a
/// cluster's oxivirt components: the aggregated API server's serving certificate, the
/// node relays' serving certificate and the API server's client certificate to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ca {
    pub cert_pem: String,
    pub key_pem: String,
}

/// What an issued certificate is for (its extended key usage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
}

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    /// A new CA named `common_name`, valid ten years.
    pub fn generate(common_name: &str) -> Result<Self, PkiError> {
        let key = rcgen::KeyPair::generate().map_err(gen("CA key"))?;
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(gen("CA"))?;
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        ca.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        ca.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let cert = ca.self_signed(&key).map_err(gen("CA certificate"))?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A certificate signed by this CA: CN `common_name`, the SANs `names` (DNS names or
    /// IPs; none for a client).
    pub fn issue(
        &self,
        common_name: &str,
        names: &[String],
        usage: Usage,
    ) -> Result<Issued, PkiError> {
        let ca_key = rcgen::KeyPair::from_pem(&self.key_pem).map_err(gen("the CA's key"))?;
        let issuer = rcgen::Issuer::from_ca_cert_pem(&self.cert_pem, ca_key)
            .map_err(gen("the CA's certificate"))?;
        let key = rcgen::KeyPair::generate().map_err(gen("key"))?;
        let mut p = rcgen::CertificateParams::new(names.to_vec()).map_err(gen("names"))?;
        p.distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        p.extended_key_usages = vec![match usage {
            Usage::Server => rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        }];
        p.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let cert = p.signed_by(&key, &issuer).map_err(gen("certificate"))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn bad_pem(what: &str) -> PkiError {
    PkiError::Io {
        path: PathBuf::from(what),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "bad PEM"),
    }
}

/// The roots of `ca_pem` (one or more PEM certificates).
pub fn roots(ca_pem: &str, what: &str) -> Result<rustls::RootCertStore, PkiError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(c.map_err(|_| bad_pem(what))?)
            .map_err(PkiError::Tls)?;
    }
    if roots.is_empty() {
        return Err(bad_pem(what));
    }
    Ok(roots)
}

fn cert_and_key(
    cert_pem: &str,
    key_pem: &str,
) -> Result<
    (
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ),
    PkiError,
> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad_pem("certificate"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| bad_pem("key"))?;
    Ok((certs, key))
}

/// A TLS server presenting `cert`; client certificates are checked against `client_ca`:
/// required at the handshake with `require`, else only verified when sent.
pub fn tls_server(
    cert: &Issued,
    client_ca: &str,
    require: bool,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = roots(client_ca, "client CA")?;
    let builder = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    );
    let verifier = if require {
        builder.build()
    } else {
        builder.allow_unauthenticated().build()
    }
    .map_err(PkiError::Verifier)?;
    let (certs, key) = cert_and_key(&cert.cert_pem, &cert.key_pem)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(PkiError::Tls)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(PkiError::Tls)?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// A TLS client that trusts only `server_ca` and presents `cert`.
pub fn tls_client(server_ca: &str, cert: &Issued) -> Result<Arc<rustls::ClientConfig>, PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = roots(server_ca, "server CA")?;
    let (certs, key) = cert_and_key(&cert.cert_pem, &cert.key_pem)?;
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(PkiError::Tls)?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(PkiError::Tls)?;
    Ok(Arc::new(cfg))
}

/// The subject common name of a DER certificate (what `requestheader-allowed-names`
/// lists).
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}
