//! libpq connection URLs (`postgres://` / `postgresql://`), parsed by hand.
//!
//! Follows libpq's URI rules
//! (<https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING-URIS>):
//! `postgres://[user[:password]@][host][:port][,...][/dbname][?param=value&...]`,
//! percent-decoding of every part, several comma-separated hosts, IPv6 addresses in
//! brackets, a Unix socket directory as a percent-encoded host (`%2Fvar%2Frun%2Fpostgresql`)
//! or as `?host=/var/run/postgresql`, and query parameters that override the parts
//! before them.
//!
//! Errors describe what is wrong and where ("host 2: port is not a number",
//! "parameter 3 is unknown") but never repeat any part of the URL: a mistyped URL can
//! put a password fragment anywhere, even in a parameter name.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::connection::{
    ConnectionSettings, Host, RootCert, Secret, SslMode, TargetSessionAttrs, TlsSettings,
    DEFAULT_PORT, DEFAULT_TARGET_SESSION_ATTRS,
};
use crate::suggest;

/// The query parameters pgduplex understands (libpq's names).
pub(crate) const PARAMETERS: &[&str] = &[
    "host",
    "port",
    "user",
    "password",
    "dbname",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "connect_timeout",
    "application_name",
    "options",
    "target_session_attrs",
];

/// The host used when a URL names none.
const DEFAULT_HOST: &str = "localhost";

/// libpq waits at least this long whatever `connect_timeout` says.
const MIN_CONNECT_TIMEOUT_SECS: u64 = 2;

/// Why a URL could not be parsed. Its messages never contain the URL or a part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError {
    /// Every problem found, in URL order.
    pub problems: Vec<UrlProblem>,
}

/// One thing wrong with a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlProblem {
    /// What is wrong (no part of the URL).
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "invalid URL: {}", p.message)?;
            if let Some(hint) = &p.hint {
                write!(f, " ({hint})")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for UrlError {}

/// A parsed URL and which settings it gave explicitly (side keys and libpq's
/// `sslrootcert=system` rule need to know).
pub(crate) struct ParsedUrl {
    pub(crate) settings: ConnectionSettings,
    pub(crate) sslmode_given: bool,
}

#[derive(Default)]
struct Problems(Vec<UrlProblem>);

impl Problems {
    fn push(&mut self, message: impl Into<String>, hint: Option<String>) {
        self.0.push(UrlProblem {
            message: message.into(),
            hint,
        });
    }
}

const PERCENT_HINT: &str =
    "percent-encode special characters: `%` as %25, `@` as %40, `/` as %2F, `:` as %3A";

/// Parses a URL; relative certificate paths are resolved against `base_dir`.
pub(crate) fn parse(url: &str, base_dir: &Path) -> Result<ConnectionSettings, UrlError> {
    let mut parsed = parse_parts(url, base_dir)?;
    let mut problems = Problems::default();
    apply_system_root_rule(&mut parsed.settings.tls, parsed.sslmode_given)
        .unwrap_or_else(|(m, h)| problems.push(m, h));
    if problems.0.is_empty() {
        Ok(parsed.settings)
    } else {
        Err(UrlError {
            problems: problems.0,
        })
    }
}

/// libpq 16: `sslrootcert=system` makes `verify-full` the default and refuses weaker
/// modes (the system store holds public CAs, so only a host-name check makes it safe).
pub(crate) fn apply_system_root_rule(
    tls: &mut TlsSettings,
    sslmode_given: bool,
) -> Result<(), (String, Option<String>)> {
    if tls.root_cert != Some(RootCert::System) {
        return Ok(());
    }
    if !sslmode_given {
        tls.mode = SslMode::VerifyFull;
        return Ok(());
    }
    if tls.mode != SslMode::VerifyFull {
        return Err((
            "sslrootcert = system requires sslmode verify-full".into(),
            Some("the system trust store holds public CAs: only verify-full makes it safe (remove sslmode or set it to verify-full)".into()),
        ));
    }
    Ok(())
}

/// Parses a URL into its settings, collecting every problem in URL order: the
/// scheme, user info, hosts, database name and query parameters, each read by its
/// own function; then the hosts and ports are paired up.
pub(crate) fn parse_parts(url: &str, base_dir: &Path) -> Result<ParsedUrl, UrlError> {
    let mut problems = Problems::default();
    let Some(rest) = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))
    else {
        problems.push(
            "must begin with postgres:// or postgresql://",
            Some(
                "key=value connection strings are not accepted; write a URL like postgres://user@host:5432/dbname".into(),
            ),
        );
        return Err(UrlError {
            problems: problems.0,
        });
    };

    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.split_once('/') {
        Some((authority, path)) => (authority, Some(path)),
        None => (before_query, None),
    };
    // The last `@` separates the user info, so an unencoded `@` in a password still
    // works; `/` and `?` in a password must be percent-encoded.
    let (userinfo, hostlist) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };

    let (user, password) = match userinfo {
        Some(userinfo) => parse_userinfo(userinfo, &mut problems),
        None => (None, None),
    };
    let (hosts, ports) = if hostlist.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        parse_hostlist(hostlist, &mut problems)
    };
    let dbname = match path {
        Some(path) => parse_dbname(path, &mut problems),
        None => None,
    };
    let mut parts = Parts {
        hosts,
        ports,
        user,
        password,
        dbname,
        tls: TlsSettings::default(),
        sslmode_given: false,
        application_name: None,
        connect_timeout: None,
        options: None,
        target_session_attrs: DEFAULT_TARGET_SESSION_ATTRS,
    };
    parse_query(query, base_dir, &mut parts, &mut problems);

    let hosts = resolve_hosts(&parts.hosts);
    let ports = resolve_ports(&parts.ports, &hosts, &mut problems);

    if !problems.0.is_empty() {
        return Err(UrlError {
            problems: problems.0,
        });
    }
    Ok(ParsedUrl {
        settings: ConnectionSettings {
            hosts,
            ports,
            user: parts.user,
            dbname: parts.dbname,
            password: parts.password,
            application_name: parts.application_name,
            connect_timeout: parts.connect_timeout,
            options: parts.options,
            target_session_attrs: parts.target_session_attrs,
            tls: parts.tls,
        },
        sslmode_given: parts.sslmode_given,
    })
}

/// What the URL says, before the hosts and ports are paired up.
struct Parts {
    hosts: Vec<String>,
    ports: Vec<Option<u16>>,
    user: Option<String>,
    password: Option<Secret>,
    dbname: Option<String>,
    tls: TlsSettings,
    sslmode_given: bool,
    application_name: Option<String>,
    connect_timeout: Option<Duration>,
    options: Option<String>,
    target_session_attrs: TargetSessionAttrs,
}

/// The user name and password of `user[:password]`.
fn parse_userinfo(userinfo: &str, problems: &mut Problems) -> (Option<String>, Option<Secret>) {
    let mut user = None;
    let mut password = None;
    let (u, p) = match userinfo.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (userinfo, None),
    };
    match decode(u) {
        Ok(u) if !u.is_empty() => user = Some(u),
        Ok(_) => {}
        Err(()) => problems.push(
            "the user name is not correctly percent-encoded",
            Some(PERCENT_HINT.into()),
        ),
    }
    if let Some(p) = p {
        match decode(p) {
            Ok(p) if !p.is_empty() => password = Some(Secret::new(p)),
            Ok(_) => {}
            Err(()) => problems.push(
                "the password is not correctly percent-encoded",
                Some(PERCENT_HINT.into()),
            ),
        }
    }
    (user, password)
}

/// The hosts and ports of `host[:port],...` (each may be empty).
fn parse_hostlist(hostlist: &str, problems: &mut Problems) -> (Vec<String>, Vec<Option<u16>>) {
    let mut hosts = Vec::new();
    let mut ports: Vec<Option<u16>> = Vec::new();
    for (i, entry) in hostlist.split(',').enumerate() {
        let n = i + 1;
        let (host, port) = if let Some(bracketed) = entry.strip_prefix('[') {
            let Some((addr, after)) = bracketed.split_once(']') else {
                problems.push(format!("host {n}: `[` without a closing `]`"), None);
                continue;
            };
            match after {
                "" => (addr, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (addr, Some(port)),
                    None => {
                        problems.push(
                            format!("host {n}: unexpected text after `]`"),
                            Some("write [address]:port".into()),
                        );
                        continue;
                    }
                },
            }
        } else {
            let (host, port) = match entry.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (entry, None),
            };
            if port.is_some_and(|p| p.contains(':')) {
                problems.push(
                    format!("host {n}: too many `:`"),
                    Some("write an IPv6 address in brackets: [::1]:5432".into()),
                );
                continue;
            }
            (host, port)
        };
        let host = decode(host).unwrap_or_else(|()| {
            problems.push(
                format!("host {n} is not correctly percent-encoded"),
                Some(PERCENT_HINT.into()),
            );
            String::new()
        });
        let port = match port {
            None | Some("") => None,
            Some(port) => parse_port(port, &format!("host {n}: port"), problems),
        };
        hosts.push(host);
        ports.push(port);
    }
    (hosts, ports)
}

/// The database name of the path.
fn parse_dbname(path: &str, problems: &mut Problems) -> Option<String> {
    let mut dbname = None;
    match decode(path) {
        Ok(db) if !db.is_empty() => dbname = Some(db),
        Ok(_) => {}
        Err(()) => problems.push(
            "the database name is not correctly percent-encoded",
            Some(PERCENT_HINT.into()),
        ),
    }
    dbname
}

/// Reads the `?name=value&...` parameters into `parts`.
fn parse_query(query: Option<&str>, base_dir: &Path, parts: &mut Parts, problems: &mut Problems) {
    for (i, pair) in query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|p| !p.is_empty())
        .enumerate()
    {
        let n = i + 1;
        let Some((key, value)) = pair.split_once('=') else {
            problems.push(
                format!("parameter {n} has no `=`"),
                Some("write ?name=value&name=value".into()),
            );
            continue;
        };
        let (Ok(key), Ok(value)) = (decode(key), decode(value)) else {
            problems.push(
                format!("parameter {n} is not correctly percent-encoded"),
                Some(PERCENT_HINT.into()),
            );
            continue;
        };
        apply_parameter(n, key, value, base_dir, parts, problems);
    }
}

/// Applies one decoded query parameter (the `n`th) to `parts`.
fn apply_parameter(
    n: usize,
    key: String,
    value: String,
    base_dir: &Path,
    parts: &mut Parts,
    problems: &mut Problems,
) {
    // Later values override earlier ones, as in libpq.
    match key.as_str() {
        "host" => {
            parts.hosts = value.split(',').map(str::to_owned).collect();
        }
        "port" => {
            parts.ports = value
                .split(',')
                .map(|p| match p {
                    "" => None,
                    p => parse_port(p, &format!("parameter {n} (port)"), problems),
                })
                .collect();
        }
        "user" => parts.user = Some(value).filter(|v| !v.is_empty()),
        "password" => parts.password = Some(value).filter(|v| !v.is_empty()).map(Secret::new),
        "dbname" => parts.dbname = Some(value).filter(|v| !v.is_empty()),
        "sslmode" => match parse_ssl_mode(&value) {
            Ok(mode) => {
                parts.tls.mode = mode;
                parts.sslmode_given = true;
            }
            Err((message, hint)) => {
                problems.push(format!("parameter {n} (sslmode): {message}"), hint)
            }
        },
        "sslrootcert" => parts.tls.root_cert = Some(root_cert(&value, base_dir)),
        "sslcert" => parts.tls.client_cert = Some(resolve(&value, base_dir)),
        "sslkey" => parts.tls.client_key = Some(resolve(&value, base_dir)),
        "connect_timeout" => match value.trim().parse::<u64>() {
            Ok(0) => problems.push(
                format!("parameter {n} (connect_timeout): 0 (wait forever) is not supported"),
                Some("give a number of seconds, or leave it out for the default".into()),
            ),
            Ok(secs) => {
                parts.connect_timeout =
                    Some(Duration::from_secs(secs.max(MIN_CONNECT_TIMEOUT_SECS)))
            }
            Err(_) => problems.push(
                format!("parameter {n} (connect_timeout) is not a whole number of seconds"),
                None,
            ),
        },
        "application_name" => parts.application_name = Some(value),
        "options" => parts.options = Some(value).filter(|v| !v.is_empty()),
        "target_session_attrs" => {
            match TargetSessionAttrs::ALL
                .into_iter()
                .find(|t| t.as_str() == value)
            {
                Some(t) => parts.target_session_attrs = t,
                None => {
                    let libpq_only = ["primary", "standby", "prefer-standby"];
                    let hint = if libpq_only.contains(&value.as_str()) {
                        Some("this libpq value is not supported by pgduplex's driver; use read-write or read-only".to_owned())
                    } else {
                        suggest::hint(&value, TargetSessionAttrs::ALL.map(|t| t.as_str()))
                            .or_else(|| Some("use any, read-write or read-only".into()))
                    };
                    problems.push(
                        format!("parameter {n} (target_session_attrs) has an unknown value"),
                        hint,
                    );
                }
            }
        }
        _ => {
            // The name is not repeated: it may be a password fragment when `?`
            // was not percent-encoded in the password.
            let hint = suggest::hint(&key, PARAMETERS.iter().copied()).or_else(|| {
                Some(format!(
                    "known parameters: {}; a `?` in the password must be written %3F",
                    PARAMETERS.join(", ")
                ))
            });
            problems.push(format!("parameter {n} is not a known parameter"), hint);
        }
    }
}

/// The hosts to connect to: `localhost` when none or an empty one is given.
fn resolve_hosts(hosts: &[String]) -> Vec<Host> {
    if hosts.is_empty() {
        vec![Host::Tcp(DEFAULT_HOST.to_owned())]
    } else {
        hosts
            .iter()
            .map(|h| match h.as_str() {
                "" => Host::Tcp(DEFAULT_HOST.to_owned()),
                h => Host::parse(h),
            })
            .collect()
    }
}

/// The port of each of `hosts`.
fn resolve_ports(ports: &[Option<u16>], hosts: &[Host], problems: &mut Problems) -> Vec<u16> {
    // libpq: one port for all hosts, or one per host.
    match ports.len() {
        0 => vec![DEFAULT_PORT; hosts.len()],
        1 => vec![ports[0].unwrap_or(DEFAULT_PORT); hosts.len()],
        n if n == hosts.len() => ports.iter().map(|p| p.unwrap_or(DEFAULT_PORT)).collect(),
        n => {
            let hosts = match hosts.len() {
                1 => "1 host".to_owned(),
                h => format!("{h} hosts"),
            };
            problems.push(
                format!("{n} ports for {hosts}"),
                Some("give one port for all hosts or one per host".into()),
            );
            Vec::new()
        }
    }
}

fn parse_port(port: &str, what: &str, problems: &mut Problems) -> Option<u16> {
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        problems.push(format!("{what} is not a number"), None);
        return None;
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => {
            problems.push(format!("{what} is out of range (1 to 65535)"), None);
            None
        }
        Ok(port) => Some(port),
    }
}

/// Parses an `sslmode` value; the error names the accepted values, never the input.
pub(crate) fn parse_ssl_mode(value: &str) -> Result<SslMode, (String, Option<String>)> {
    if let Ok(mode) = value.parse() {
        return Ok(mode);
    }
    let hint = if value == "allow" {
        Some("`allow` is not supported (the driver cannot fall back to TLS); use prefer".into())
    } else {
        suggest::hint(value, SslMode::ALL.map(SslMode::as_str))
            .or_else(|| Some("use disable, prefer, require, verify-ca or verify-full".to_owned()))
    };
    Err(("unknown sslmode".into(), hint))
}

/// `sslrootcert`: `system` is the OS trust store, anything else a file.
pub(crate) fn root_cert(value: &str, base_dir: &Path) -> RootCert {
    if value == "system" {
        RootCert::System
    } else {
        RootCert::File(resolve(value, base_dir))
    }
}

/// Relative paths are taken from the configuration file's directory, not the working
/// directory: a daemon started by systemd runs in `/`.
pub(crate) fn resolve(path: &str, base_dir: &Path) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    }
}

/// Percent-decodes `s` as UTF-8. Stricter than [`percent_decode_str`], which
/// passes a malformed escape through as it is: every `%` must start an escape of
/// two hexadecimal digits.
fn decode(s: &str) -> Result<String, ()> {
    let bytes = s.as_bytes();
    for (i, _) in s.match_indices('%') {
        match bytes.get(i + 1..i + 3) {
            Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => {}
            _ => return Err(()),
        }
    }
    percent_decode_str(s)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| ())
}

/// Everything but RFC 3986's unreserved characters.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub(crate) fn encode(s: &str) -> String {
    utf8_percent_encode(s, NOT_UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> ConnectionSettings {
        parse(url, Path::new("/etc/pgduplex")).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn err(url: &str) -> String {
        parse(url, Path::new("/etc/pgduplex"))
            .err()
            .unwrap_or_else(|| panic!("{url} parsed"))
            .to_string()
    }

    #[test]
    fn full_url() {
        let s = ok("postgres://app:p%40ss:w@db.example.com:6432/my%20db?sslmode=require&application_name=pgduplex%20test&connect_timeout=1&options=-c%20statement_timeout%3D0&target_session_attrs=any");
        assert_eq!(s.hosts, vec![Host::Tcp("db.example.com".into())]);
        assert_eq!(s.ports, vec![6432]);
        assert_eq!(s.user.as_deref(), Some("app"));
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("p@ss:w"));
        assert_eq!(s.dbname.as_deref(), Some("my db"));
        assert_eq!(s.tls.mode, SslMode::Require);
        assert_eq!(s.application_name.as_deref(), Some("pgduplex test"));
        assert_eq!(s.connect_timeout, Some(Duration::from_secs(2)));
        assert_eq!(s.options.as_deref(), Some("-c statement_timeout=0"));
        assert_eq!(s.target_session_attrs, TargetSessionAttrs::Any);
    }

    #[test]
    fn defaults() {
        let s = ok("postgresql://");
        assert_eq!(s.hosts, vec![Host::Tcp("localhost".into())]);
        assert_eq!(s.ports, vec![5432]);
        assert_eq!(s.user, None);
        assert_eq!(s.password, None);
        assert_eq!(s.dbname, None);
        assert_eq!(s.tls, TlsSettings::default());
        assert_eq!(s.target_session_attrs, TargetSessionAttrs::ReadWrite);
        assert_eq!(s.connect_timeout, None);
    }

    #[test]
    fn several_hosts_ipv6_and_ports() {
        let s = ok("postgres://u@h1:5433,[::1],[fe80::1%25eth0]:7000,:5999/db");
        assert_eq!(
            s.hosts,
            vec![
                Host::Tcp("h1".into()),
                Host::Tcp("::1".into()),
                Host::Tcp("fe80::1%eth0".into()),
                Host::Tcp("localhost".into()),
            ]
        );
        assert_eq!(s.ports, vec![5433, 5432, 7000, 5999]);

        // One port in the query applies to every host.
        let s = ok("postgres://u@a,b/db?port=6000");
        assert_eq!(s.ports, vec![6000, 6000]);
        let s = ok("postgres://u@/db?host=a,b&port=1,2");
        assert_eq!(s.hosts, vec![Host::Tcp("a".into()), Host::Tcp("b".into())]);
        assert_eq!(s.ports, vec![1, 2]);
    }

    #[test]
    fn unix_sockets() {
        let s = ok("postgres://u@%2Fvar%2Frun%2Fpostgresql/db");
        assert_eq!(s.hosts, vec![Host::Unix("/var/run/postgresql".into())]);
        let s = ok("postgres:///db?host=/tmp&port=5499");
        assert_eq!(s.hosts, vec![Host::Unix("/tmp".into())]);
        assert_eq!(s.ports, vec![5499]);
    }

    #[test]
    fn query_overrides_authority() {
        let s = ok("postgres://a:b@h/d?user=x&password=y&dbname=z&host=other");
        assert_eq!(s.user.as_deref(), Some("x"));
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("y"));
        assert_eq!(s.dbname.as_deref(), Some("z"));
        assert_eq!(s.hosts, vec![Host::Tcp("other".into())]);
    }

    #[test]
    fn tls_parameters() {
        let s = ok("postgres://u@h/d?sslrootcert=ca.pem&sslcert=/abs/c.pem&sslkey=k.key");
        assert_eq!(
            s.tls.root_cert,
            Some(RootCert::File("/etc/pgduplex/ca.pem".into()))
        );
        assert_eq!(s.tls.client_cert.as_deref(), Some(Path::new("/abs/c.pem")));
        assert_eq!(
            s.tls.client_key.as_deref(),
            Some(Path::new("/etc/pgduplex/k.key"))
        );
        let s = ok("postgres://u@h/d?sslrootcert=system");
        assert_eq!(s.tls.root_cert, Some(RootCert::System));
        assert_eq!(s.tls.mode, SslMode::VerifyFull);
        let e = err("postgres://u@h/d?sslrootcert=system&sslmode=require");
        assert!(e.contains("requires sslmode verify-full"), "{e}");
    }

    #[test]
    fn errors_describe_without_quoting() {
        let cases = [
            ("mysql://u:SECRETPW@h/d", "must begin with postgres://"),
            (
                "postgres://u:SECRETPW@h:54x2/d",
                "host 1: port is not a number",
            ),
            (
                "postgres://u:SECRETPW@h:99999/d",
                "host 1: port is out of range",
            ),
            (
                "postgres://u:SECRETPW@h,i:0/d",
                "host 2: port is out of range",
            ),
            ("postgres://u:SECRETPW@::1/d", "host 1: too many `:`"),
            ("postgres://u:SECRETPW@[::1/d", "`[` without a closing `]`"),
            (
                "postgres://u:SECRETPW@[::1]x/d",
                "unexpected text after `]`",
            ),
            (
                "postgres://u:SECRET%zzPW@h/d",
                "password is not correctly percent-encoded",
            ),
            (
                "postgres://u:SECRETPW@h/d?sslmode=verify_full",
                "did you mean `verify-full`?",
            ),
            ("postgres://u:SECRETPW@h/d?sslmode=allow", "not supported"),
            (
                "postgres://u:SECRETPW@h/d?sslmod=require",
                "parameter 1 is not a known parameter (did you mean `sslmode`?)",
            ),
            ("postgres://u:SECRET?PW@h/d", "parameter 1 has no `=`"),
            (
                "postgres://u:SECRET?PW=x@h/d",
                "parameter 1 is not a known parameter",
            ),
            (
                "postgres://u:SECRETPW@h/d?connect_timeout=soon",
                "not a whole number",
            ),
            (
                "postgres://u:SECRETPW@h/d?connect_timeout=0",
                "wait forever",
            ),
            (
                "postgres://u:SECRETPW@h/d?target_session_attrs=primary",
                "not supported",
            ),
            (
                "postgres://u:SECRETPW@a,b,c/d?port=1,2",
                "2 ports for 3 hosts",
            ),
        ];
        for (url, expected) in cases {
            let e = parse(url, Path::new("")).expect_err(url);
            let text = format!("{e} {e:?}");
            assert!(text.contains(expected), "{url}: {text}");
            assert!(!text.contains("SECRET"), "{url}: {text}");
            assert!(!text.contains("PW"), "{url}: {text}");
        }
    }

    #[test]
    fn all_problems_are_reported() {
        let e = parse("postgres://u@h:x,i:y/d?bogus=1&sslmode=nope", Path::new("")).unwrap_err();
        assert_eq!(e.problems.len(), 4, "{e}");
    }

    #[test]
    fn decode_is_strict() {
        assert_eq!(decode("a%41%c3%BC%2Fb").unwrap(), "aAü/b");
        // A `%` that does not start two hexadecimal digits, and bytes that are
        // not UTF-8, are errors (not passed through as they are).
        for s in ["%zz", "%4", "abc%", "%%41", "%+a", "%FF", "%c3"] {
            assert_eq!(decode(s), Err(()), "{s}");
        }
    }

    #[test]
    fn encode_round_trips() {
        for s in ["plain", "a b/c@d:e%f", "ünïcødé", "[::1]"] {
            assert_eq!(decode(&encode(s)).unwrap(), s);
        }
    }
}
