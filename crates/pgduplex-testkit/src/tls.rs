//! Test certificates made with rcgen: a CA, a server certificate signed by it that is
//! valid only for the DNS name `localhost`, a client certificate for `CN=postgres`, and
//! a second, unrelated CA for "wrong CA" tests. Everything is written as PEM files into
//! one directory; this module owns their names, contents and file modes, not who owns
//! them on disk (the server module hands the server's files to the server's OS user).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// Paths of the PEM files that [`generate`] wrote. All paths are absolute.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA that signed the server and client certificates (`sslrootcert` for clients,
    /// `ssl_ca_file` for the server).
    pub ca_cert: PathBuf,
    /// The server certificate: `CN=localhost`, one SAN `DNS:localhost`, no IP SAN, so
    /// `verify-full` succeeds for host `localhost` and fails for host `127.0.0.1`.
    pub server_cert: PathBuf,
    /// The server's private key, mode 0600.
    pub server_key: PathBuf,
    /// A client certificate for `CN=postgres`, signed by [`TlsFiles::ca_cert`].
    pub client_cert: PathBuf,
    /// The client's private key, mode 0600 (libpq refuses looser modes).
    pub client_key: PathBuf,
    /// A CA certificate that signed nothing the server presents: verifying the server
    /// against it must fail.
    pub other_ca_cert: PathBuf,
}

/// File names inside the directory, relative so that `postgresql.conf` can name them
/// relative to the data directory.
pub const CA_CERT: &str = "root.crt";
pub const SERVER_CERT: &str = "server.crt";
pub const SERVER_KEY: &str = "server.key";
pub const CLIENT_CERT: &str = "client.crt";
pub const CLIENT_KEY: &str = "client.key";
pub const OTHER_CA_CERT: &str = "other-root.crt";

/// A CA certificate together with its key, able to sign leaf certificates.
pub struct CertAuthority {
    pub cert: Certificate,
    pub key: KeyPair,
}

impl CertAuthority {
    /// Makes a new self-signed CA with the given common name.
    pub fn new(common_name: &str) -> anyhow::Result<CertAuthority> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().context("generating CA key")?;
        let cert = params.self_signed(&key).context("self-signing CA")?;
        Ok(CertAuthority { cert, key })
    }

    /// Signs a leaf certificate. `dns_names` become DNS SANs (strings that parse as IP
    /// addresses would become IP SANs: callers pass names only).
    pub fn sign_leaf(
        &self,
        common_name: &str,
        dns_names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> anyhow::Result<(Certificate, KeyPair)> {
        let names: Vec<String> = dns_names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name = dn(common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().context("generating leaf key")?;
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .with_context(|| format!("signing certificate for CN={common_name}"))?;
        Ok((cert, key))
    }
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "pgduplex test kit");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Writes a fresh CA, server certificate (DNS `localhost` only), client certificate for
/// `CN=postgres` and an unrelated second CA into `dir`, under the file names above.
/// Private keys get mode 0600.
pub fn generate(dir: &Path) -> anyhow::Result<TlsFiles> {
    let ca = CertAuthority::new("pgduplex test CA")?;
    let other = CertAuthority::new("pgduplex unrelated test CA")?;
    let (server_cert, server_key) = ca.sign_leaf(
        "localhost",
        &["localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let (client_cert, client_key) =
        ca.sign_leaf("postgres", &[], ExtendedKeyUsagePurpose::ClientAuth)?;

    let files = TlsFiles {
        ca_cert: dir.join(CA_CERT),
        server_cert: dir.join(SERVER_CERT),
        server_key: dir.join(SERVER_KEY),
        client_cert: dir.join(CLIENT_CERT),
        client_key: dir.join(CLIENT_KEY),
        other_ca_cert: dir.join(OTHER_CA_CERT),
    };
    write_file(&files.ca_cert, &ca.cert.pem(), 0o644)?;
    write_file(&files.other_ca_cert, &other.cert.pem(), 0o644)?;
    write_file(&files.server_cert, &server_cert.pem(), 0o644)?;
    write_file(&files.server_key, &server_key.serialize_pem(), 0o600)?;
    write_file(&files.client_cert, &client_cert.pem(), 0o644)?;
    write_file(&files.client_key, &client_key.serialize_pem(), 0o600)?;
    Ok(files)
}

fn write_file(path: &Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    // Created with the final mode from the start: a key must never be briefly readable.
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
