//! Connection settings of one side, as libpq understands them, without a driver.
//!
//! `pgduplex-pg` turns these into a `tokio_postgres::Config` and a rustls client
//! configuration; this module only says what the user asked for, including the libpq
//! rules that change what an `sslmode` means.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Port used for a host whose port is not given (PostgreSQL's default).
pub const DEFAULT_PORT: u16 = 5432;

/// `sslmode` when neither the URL nor the side table sets one: `prefer`, as in libpq
/// (try TLS, fall back to plain text, verify nothing). `sslrootcert = "system"`
/// changes the default to `verify-full`, as in libpq 16.
pub const DEFAULT_SSL_MODE: SslMode = SslMode::Prefer;

/// `target_session_attrs` when the URL does not set one: `read-write`. libpq's default
/// is `any`; pgduplex writes to both sides, so with several hosts it must land on the
/// primary, and with one host a read-only standby is refused at connect time with a
/// clear message instead of failing on the first write.
pub const DEFAULT_TARGET_SESSION_ATTRS: TargetSessionAttrs = TargetSessionAttrs::ReadWrite;

/// A password. `Debug` prints `[redacted]`; there is no `Display` and no `Serialize`,
/// so it cannot end up in a log line or a dumped configuration by accident. Use
/// [`Secret::expose`] where the value is really needed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A server address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A host name or IP address (IPv6 without brackets).
    Tcp(String),
    /// A directory holding the server's Unix socket: a host beginning with `/`.
    Unix(PathBuf),
}

impl Host {
    /// A host as libpq reads one: beginning with `/` means a socket directory.
    pub fn parse(host: &str) -> Host {
        if host.starts_with('/') {
            Host::Unix(PathBuf::from(host))
        } else {
            Host::Tcp(host.to_owned())
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Tcp(host) if host.contains(':') => write!(f, "[{host}]"),
            Host::Tcp(host) => f.write_str(host),
            Host::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// libpq's `sslmode`. `allow` is not offered: the driver cannot fall back from plain
/// text to TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it, else plain text; the certificate is not checked.
    Prefer,
    /// TLS required; the certificate is not checked (but see
    /// [`TlsSettings::effective_mode`]).
    Require,
    /// TLS required; the server certificate must chain to the root certificate.
    VerifyCa,
    /// As `verify-ca`, and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    /// Every mode, weakest first.
    pub const ALL: [SslMode; 5] = [
        SslMode::Disable,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    /// The mode as written in a URL or the file.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether the server's certificate is checked against a root certificate.
    pub fn verifies_certificate(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        SslMode::ALL.into_iter().find(|m| m.as_str() == s).ok_or(())
    }
}

/// Where the root certificates for `verify-ca` / `verify-full` come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RootCert {
    /// A PEM file with one or more CA certificates.
    File(PathBuf),
    /// The operating system's trust store (`sslrootcert=system`, as in libpq 16).
    System,
}

/// TLS settings of one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `sslmode` as configured. Default: [`DEFAULT_SSL_MODE`] (`prefer`), or
    /// `verify-full` when `sslrootcert = "system"`. Use
    /// [`TlsSettings::effective_mode`] to decide what to do.
    pub mode: SslMode,
    /// `sslrootcert`: root certificates to verify the server against. Default: none.
    ///
    /// libpq's rule, kept here: when a root certificate is given explicitly and the
    /// mode is `require`, the server certificate is verified as in `verify-ca` (see
    /// [`TlsSettings::effective_mode`]). `system` requires `verify-full`.
    pub root_cert: Option<RootCert>,
    /// `sslcert`: client certificate (PEM) for certificate authentication. Default:
    /// none. Given together with `client_key` or not at all.
    pub client_cert: Option<PathBuf>,
    /// `sslkey`: the client certificate's private key (PEM). Default: none.
    pub client_key: Option<PathBuf>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            mode: DEFAULT_SSL_MODE,
            root_cert: None,
            client_cert: None,
            client_key: None,
        }
    }
}

impl TlsSettings {
    /// The mode to implement: `require` with an explicit root certificate means
    /// `verify-ca`, as in libpq ("if a root CA file exists, the behavior of
    /// sslmode=require will be the same as that of verify-ca",
    /// <https://www.postgresql.org/docs/current/libpq-ssl.html>). pgduplex applies
    /// the rule only to an `sslrootcert` that was configured, never to a
    /// `~/.postgresql/root.crt` that happens to exist.
    pub fn effective_mode(&self) -> SslMode {
        match (self.mode, &self.root_cert) {
            (SslMode::Require, Some(_)) => SslMode::VerifyCa,
            (mode, _) => mode,
        }
    }
}

/// libpq's `target_session_attrs`, limited to what the driver implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetSessionAttrs {
    /// Any server will do.
    Any,
    /// The server must accept writes (a primary).
    ReadWrite,
    /// The server must be read-only (a standby).
    ReadOnly,
}

impl TargetSessionAttrs {
    /// Every value, as accepted in a URL.
    pub const ALL: [TargetSessionAttrs; 3] = [
        TargetSessionAttrs::Any,
        TargetSessionAttrs::ReadWrite,
        TargetSessionAttrs::ReadOnly,
    ];

    /// The value as written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetSessionAttrs::Any => "any",
            TargetSessionAttrs::ReadWrite => "read-write",
            TargetSessionAttrs::ReadOnly => "read-only",
        }
    }
}

impl fmt::Display for TargetSessionAttrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything needed to connect to one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSettings {
    /// Servers to try in order (libpq's `host=a,b`). Default: `localhost` (libpq would
    /// use its compiled-in socket directory; write `?host=/var/run/postgresql` for
    /// that). Never empty.
    pub hosts: Vec<Host>,
    /// One port per entry of `hosts`, always the same length. Default for each:
    /// [`DEFAULT_PORT`].
    pub ports: Vec<u16>,
    /// User name. `Config` requires one (the driver has no OS-user default); `None`
    /// only from [`ConnectionSettings::from_url`].
    pub user: Option<String>,
    /// Database name. Default: none (the server then uses the user name).
    pub dbname: Option<String>,
    /// Password, from the URL or the side's `password_file` (not both). Default: none.
    pub password: Option<Secret>,
    /// `application_name`. Default: none (the pg crate names its connections).
    pub application_name: Option<String>,
    /// `connect_timeout`, whole seconds in the URL; libpq treats values below 2 as 2
    /// and so does pgduplex. Default: none (the pg crate's own default applies).
    pub connect_timeout: Option<Duration>,
    /// `options`: command-line options sent to the server (e.g. `-c
    /// statement_timeout=0`). Default: none.
    pub options: Option<String>,
    /// `target_session_attrs`. Default: [`DEFAULT_TARGET_SESSION_ATTRS`]
    /// (`read-write`).
    pub target_session_attrs: TargetSessionAttrs,
    /// TLS settings.
    pub tls: TlsSettings,
}

impl ConnectionSettings {
    /// Parses a libpq connection URL (`postgres://` or `postgresql://`) on its own,
    /// e.g. for a command-line override. Relative paths in it stay relative. The
    /// error never contains the URL or a part of it.
    pub fn from_url(url: &str) -> Result<ConnectionSettings, crate::UrlError> {
        crate::url::parse(url, std::path::Path::new(""))
    }

    /// The connection as a URL without the password, for logs and messages, e.g.
    /// `postgres://app@db.example.com:5432/app?sslmode=require`. `sslmode` is always
    /// shown, as [`TlsSettings::effective_mode`], so the log says what TLS is really
    /// used.
    pub fn redacted(&self) -> String {
        let mut url = String::from("postgres://");
        if let Some(user) = &self.user {
            url.push_str(&crate::url::encode(user));
            url.push('@');
        }
        for (i, host) in self.hosts.iter().enumerate() {
            if i > 0 {
                url.push(',');
            }
            match host {
                Host::Tcp(name) if name.contains(':') => {
                    url.push('[');
                    url.push_str(&name.replace('%', "%25"));
                    url.push(']');
                }
                Host::Tcp(name) => url.push_str(&crate::url::encode(name)),
                Host::Unix(path) => url.push_str(&crate::url::encode(&path.to_string_lossy())),
            }
            if let Some(port) = self.ports.get(i) {
                url.push(':');
                url.push_str(&port.to_string());
            }
        }
        url.push('/');
        if let Some(dbname) = &self.dbname {
            url.push_str(&crate::url::encode(dbname));
        }
        let mut params = vec![("sslmode", self.tls.effective_mode().to_string())];
        match &self.tls.root_cert {
            Some(RootCert::System) => params.push(("sslrootcert", "system".to_owned())),
            Some(RootCert::File(path)) => {
                params.push(("sslrootcert", path.to_string_lossy().into_owned()))
            }
            None => {}
        }
        if let Some(path) = &self.tls.client_cert {
            params.push(("sslcert", path.to_string_lossy().into_owned()));
        }
        if let Some(path) = &self.tls.client_key {
            params.push(("sslkey", path.to_string_lossy().into_owned()));
        }
        if self.target_session_attrs != DEFAULT_TARGET_SESSION_ATTRS {
            params.push((
                "target_session_attrs",
                self.target_session_attrs.to_string(),
            ));
        }
        if let Some(timeout) = self.connect_timeout {
            params.push(("connect_timeout", timeout.as_secs().to_string()));
        }
        if let Some(name) = &self.application_name {
            params.push(("application_name", name.clone()));
        }
        if let Some(options) = &self.options {
            params.push(("options", options.clone()));
        }
        for (i, (key, value)) in params.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(key);
            url.push('=');
            url.push_str(&crate::url::encode(value));
        }
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_redacted() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn require_with_root_cert_is_verify_ca() {
        let mut tls = TlsSettings {
            mode: SslMode::Require,
            ..TlsSettings::default()
        };
        assert_eq!(tls.effective_mode(), SslMode::Require);
        tls.root_cert = Some(RootCert::File("/ca.pem".into()));
        assert_eq!(tls.effective_mode(), SslMode::VerifyCa);
        tls.mode = SslMode::VerifyFull;
        assert_eq!(tls.effective_mode(), SslMode::VerifyFull);
        tls.mode = SslMode::Prefer;
        assert_eq!(tls.effective_mode(), SslMode::Prefer);
    }

    #[test]
    fn ssl_mode_round_trips() {
        for mode in SslMode::ALL {
            assert_eq!(mode.to_string().parse::<SslMode>(), Ok(mode));
        }
        assert!("allow".parse::<SslMode>().is_err());
    }
}
