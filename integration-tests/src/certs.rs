//! Throwaway certificate authorities for tests: a CA that issues server certificates (the test
//! cluster's, the proxy's client-facing one) and client certificates, plus rustls client configs
//! that trust it.
//!
//! Fixture code: a failure here means the test cannot run at all, so it panics with a message
//! instead of returning errors no test would handle.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore};

/// A certificate authority that exists only for one test run. Each `TestCa::new()` is a new,
/// unrelated CA, so a second one plays "somebody else's CA" in negative tests.
pub struct TestCa {
    cert: Certificate,
    key: KeyPair,
    cert_pem: String,
}

/// A certificate and its private key, both PEM, issued by a [`TestCa`].
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

/// What an issued certificate is for; decides its extended key usage, which rustls checks.
#[derive(Clone, Copy)]
enum Purpose {
    Server,
    Client,
}

impl TestCa {
    /// Generates a fresh CA key and self-signed CA certificate.
    pub fn new() -> TestCa {
        let mut params =
            CertificateParams::new(Vec::<String>::new()).expect("empty SAN list is valid");
        params
            .distinguished_name
            .push(DnType::CommonName, "pgshroud test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("generate CA key");
        let cert = params.self_signed(&key).expect("self-sign CA certificate");
        let cert_pem = cert.pem();
        TestCa {
            cert,
            key,
            cert_pem,
        }
    }

    /// The CA certificate, PEM (what `sslrootcert` files hold).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// Issues a server certificate for `names`; entries that parse as IP addresses become IP
    /// SANs, the rest DNS SANs. The first name is also the subject's common name.
    pub fn issue(&self, names: &[&str]) -> IssuedCert {
        self.sign(
            names,
            names.first().copied().unwrap_or("pgshroud test server"),
            Purpose::Server,
        )
    }

    /// Issues a client certificate whose subject common name is `common_name` (what
    /// certificate-based identity matching and PostgreSQL's `cert` authentication look at).
    pub fn issue_client(&self, common_name: &str) -> IssuedCert {
        self.sign(&[], common_name, Purpose::Client)
    }

    /// Writes the CA certificate to `dir/ca.crt` and returns that path.
    pub fn write_ca(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.crt");
        fs::write(&path, &self.cert_pem)
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// A root store holding only this CA.
    pub fn root_store(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.cert_der())
            .expect("a freshly generated CA certificate is a valid root");
        roots
    }

    /// A rustls client config that trusts only this CA and checks the server name, i.e. what
    /// libpq calls `sslmode=verify-full`. Pass it to `tokio_postgres_rustls::MakeRustlsConnect`.
    pub fn client_config(&self) -> ClientConfig {
        client_builder()
            .with_root_certificates(self.root_store())
            .with_no_client_auth()
    }

    /// Like [`TestCa::client_config`], and presents `identity` as the client certificate.
    pub fn client_config_with_identity(&self, identity: &IssuedCert) -> ClientConfig {
        client_builder()
            .with_root_certificates(self.root_store())
            .with_client_auth_cert(vec![identity.cert_der.clone()], identity.private_key_der())
            .expect("an issued key matches its certificate")
    }

    fn sign(&self, names: &[&str], common_name: &str, purpose: Purpose) -> IssuedCert {
        let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(sans)
            .unwrap_or_else(|e| panic!("invalid certificate names {names:?}: {e}"));
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![match purpose {
            Purpose::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Purpose::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("generate certificate key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign certificate");
        IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }
}

impl Default for TestCa {
    fn default() -> TestCa {
        TestCa::new()
    }
}

/// Shows the CA's certificate only, never its key.
impl fmt::Debug for TestCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCa")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl IssuedCert {
    /// Writes `dir/<name>.crt` and `dir/<name>.key` (the key with mode 0600, which PostgreSQL
    /// insists on) and returns (certificate path, key path).
    pub fn write_to(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert_path = dir.join(format!("{name}.crt"));
        let key_path = dir.join(format!("{name}.key"));
        fs::write(&cert_path, &self.cert_pem)
            .unwrap_or_else(|e| panic!("write {}: {e}", cert_path.display()));
        write_private(&key_path, self.key_pem.as_bytes());
        (cert_path, key_path)
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// The private key, PKCS#8 DER.
    pub fn private_key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// Shows the certificate only, never the key.
impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Creates (or truncates) `path` with mode 0600 from the start, so the key is never readable by
/// others, not even for a moment.
fn write_private(path: &Path, contents: &[u8]) {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    file.write_all(contents)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    // `mode` applies only when the file is created; an existing file keeps its old mode.
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// rustls with the ring provider named explicitly: `ClientConfig::builder()` would panic if a
/// dependency ever enabled a second provider (aws-lc-rs) next to ring.
fn client_builder() -> rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier> {
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
}
