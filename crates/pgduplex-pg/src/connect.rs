//! Connections to one side: libpq's `sslmode` semantics on rustls.
//!
//! libpq's modes, as documented in "SSL Support" of the PostgreSQL manual:
//! `disable` never encrypts; `prefer` encrypts when the server offers it and does not
//! verify; `require` encrypts and does not verify (Heroku's certificates cannot be
//! verified, so this is the mode it needs) — unless a root certificate is given, in
//! which case libpq behaves as `verify-ca`; `verify-ca` checks the chain against the
//! root certificate; `verify-full` also checks that the certificate names the host.
//! tokio-postgres knows only disable/prefer/require for the negotiation, so the
//! verification part lives here, in rustls certificate verifiers.

use std::sync::Arc;
use std::time::Duration;

use pgduplex_config::{ConnectionSettings, Host, RootCert, SslMode, TargetSessionAttrs};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::PgError;

/// Default `connect_timeout` when the URL gives none: a side that does not answer
/// is reported within seconds instead of hanging `check` for minutes.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What pgduplex connects as: the libpq settings of one side plus a label for
/// messages ("left"/"right") and the redacted address.
#[derive(Clone)]
pub struct Endpoint {
    label: String,
    redacted: String,
    pg: tokio_postgres::Config,
    /// `None` for Unix-domain sockets: tokio-postgres asks the TLS connector for a
    /// server name even when it will not use it, and a socket path is none.
    tls: Option<MakeRustlsConnect>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("label", &self.label)
            .field("address", &self.redacted)
            .finish()
    }
}

impl Endpoint {
    /// Builds the connection settings and the TLS configuration. Fails (without
    /// touching the network) when a certificate file cannot be read.
    pub fn new(label: impl Into<String>, settings: &ConnectionSettings) -> Result<Self, PgError> {
        let label = label.into();
        let redacted = settings.redacted();
        let mut pg = tokio_postgres::Config::new();
        for host in &settings.hosts {
            match host {
                Host::Tcp(h) => pg.host(h),
                Host::Unix(p) => pg.host_path(p),
            };
        }
        for port in &settings.ports {
            pg.port(*port);
        }
        if let Some(user) = &settings.user {
            pg.user(user);
        }
        if let Some(db) = &settings.dbname {
            pg.dbname(db);
        }
        if let Some(pw) = &settings.password {
            pg.password(pw.expose());
        }
        if let Some(opts) = &settings.options {
            pg.options(opts);
        }
        pg.application_name(settings.application_name.as_deref().unwrap_or("pgduplex"));
        pg.connect_timeout(settings.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT));
        pg.keepalives(true);
        pg.target_session_attrs(match settings.target_session_attrs {
            TargetSessionAttrs::Any => tokio_postgres::config::TargetSessionAttrs::Any,
            TargetSessionAttrs::ReadWrite => tokio_postgres::config::TargetSessionAttrs::ReadWrite,
            TargetSessionAttrs::ReadOnly => tokio_postgres::config::TargetSessionAttrs::ReadOnly,
        });
        // libpq never uses TLS over a Unix-domain socket; neither do we.
        let unix_only =
            !settings.hosts.is_empty() && settings.hosts.iter().all(|h| matches!(h, Host::Unix(_)));
        let mode = if unix_only {
            SslMode::Disable
        } else {
            settings.tls.effective_mode()
        };
        pg.ssl_mode(match mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        let tls = if unix_only {
            None
        } else {
            Some(MakeRustlsConnect::new(tls_config(&label, settings, mode)?))
        };
        Ok(Self {
            label,
            redacted,
            pg,
            tls,
        })
    }

    /// "left" or "right" (or whatever label the caller gave).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The address without any password, for messages.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// The user pgduplex logs in as (the apply role), if the URL names one.
    pub fn user(&self) -> Option<&str> {
        self.pg.get_user()
    }

    /// Opens a connection and spawns its driver task on the current runtime.
    pub async fn connect(&self) -> Result<Client, PgError> {
        let err = |source| PgError::Connect {
            side: self.label.clone(),
            address: self.redacted.clone(),
            source,
        };
        let client = match &self.tls {
            Some(tls) => {
                let (client, connection) = self.pg.connect(tls.clone()).await.map_err(err)?;
                self.drive(connection);
                client
            }
            None => {
                let (client, connection) =
                    self.pg.connect(tokio_postgres::NoTls).await.map_err(err)?;
                self.drive(connection);
                client
            }
        };
        Ok(client)
    }
}

impl Endpoint {
    /// Spawns the task that drives a connection until it closes.
    fn drive<F>(&self, connection: F)
    where
        F: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
    {
        let label = self.label.clone();
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(side = %label, error = %err, "connection closed");
            }
        });
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_config(
    label: &str,
    settings: &ConnectionSettings,
    mode: SslMode,
) -> Result<ClientConfig, PgError> {
    let provider = provider();
    let tls_err = |message: String| PgError::Tls {
        side: label.to_string(),
        message,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => {
            Arc::new(NoVerification(provider.clone()))
        }
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = match &settings.tls.root_cert {
                Some(root) => load_roots(root).map_err(tls_err)?,
                None => {
                    return Err(tls_err(format!(
                        "sslmode {} needs a root certificate to verify the server: set sslrootcert to the CA file (or \"system\" for the operating system's store)",
                        mode
                    )))
                }
            };
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| tls_err(format!("cannot use the root certificates: {e}")))?;
            if mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            }
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(format!("TLS setup failed: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&settings.tls.client_cert, &settings.tls.client_key) {
        (Some(cert), Some(key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| tls_err(format!("cannot read sslcert {}: {e}", cert.display())))?;
            let key_der = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| tls_err(format!("cannot read sslkey {}: {e}", key.display())))?;
            builder.with_client_auth_cert(certs, key_der).map_err(|e| {
                tls_err(format!("sslcert and sslkey do not form a usable pair: {e}"))
            })?
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(tls_err(
                "sslcert and sslkey must be given together".to_string(),
            ))
        }
        (None, None) => builder.with_no_client_auth(),
    };
    Ok(config)
}

fn load_roots(root: &RootCert) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match root {
        RootCert::File(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("cannot read sslrootcert {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "sslrootcert {} holds no certificate",
                    path.display()
                ));
            }
            for cert in certs {
                store
                    .add(cert)
                    .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
            }
        }
        RootCert::System => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = store.add(cert);
            }
            if store.is_empty() {
                return Err("sslrootcert = \"system\" but the operating system's certificate store is empty".into());
            }
        }
    }
    Ok(store)
}

/// `prefer` / `require` without a root certificate: encrypt, verify nothing about
/// the certificate (libpq's behaviour), but still check the handshake signatures.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
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

/// `verify-ca`: the chain must lead to the root certificate; the host name is not
/// checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
