//! pgduplex configuration: one TOML file, read once at start and passed around
//! explicitly (no global).
//!
//! Loading happens in three passes, each in its own module:
//!
//! 1. `vars`: `${VAR}` references are expanded from the environment on the raw
//!    text, before TOML sees it (vector's `config/vars.rs` approach), so a secret
//!    never has to be written into the file.
//! 2. `document`: the text is parsed with `toml_edit` (which keeps byte spans) and
//!    walked against the known-key tree by hand, building the typed [`Config`] and
//!    collecting *every* problem at once with its line, column, dotted key path and a
//!    "did you mean" where one fits.
//! 3. `url`: `url` values are libpq connection URLs, parsed here rather than by
//!    the driver so that errors point at the file and never echo the URL (it holds a
//!    password).
//!
//! The crate is deliberately free of database crates: `pgduplex-pg` turns
//! [`ConnectionSettings`] into a `tokio_postgres::Config` and a rustls configuration.
//!
//! Secrets: passwords live in [`Secret`], which redacts itself in `Debug`, has no
//! `Display` and does not serialize. Error messages name keys and positions only,
//! never a value from the file.

mod connection;
mod document;
mod error;
mod onetimecopy;
mod replication;
mod suggest;
mod tables;
mod url;
mod vars;

use std::fmt;
use std::path::{Path, PathBuf};

pub use connection::{
    ConnectionSettings, Host, RootCert, Secret, SslMode, TargetSessionAttrs, TlsSettings,
    DEFAULT_PORT, DEFAULT_SSL_MODE, DEFAULT_TARGET_SESSION_ATTRS,
};
pub use error::{ConfigError, Problem};
pub use onetimecopy::{
    CopyFormat, CopyMode, FkStrategy, OnetimecopyConfig, DEFAULT_COPY_FORMAT, DEFAULT_COPY_FROM,
    DEFAULT_COPY_JOBS, DEFAULT_COPY_MODE, DEFAULT_DEFER_INDEXES, DEFAULT_FK_STRATEGY,
    DEFAULT_RANGE_ROWS, DEFAULT_REBUILD_INDEXES,
};
pub use replication::{
    host_name, ConflictPolicy, InstallConfig, ReplicationConfig, DAEMON_NAME_MAX_LEN,
    DEFAULT_ALLOW_APPLY_TRIGGERS, DEFAULT_CONFLICT_POLICY, DEFAULT_LOCK_TIMEOUT,
    DEFAULT_MAX_ATTEMPTS, DEFAULT_SYNC_NAME, FALLBACK_DAEMON_NAME, HOST_NAME_FILE,
    SYNC_NAME_MAX_LEN,
};
pub use tables::{TableOverride, TableSelection};
pub use url::{UrlError, UrlProblem};

/// The environment variable the binary reads for the configuration path when
/// `--config` is not given (named here so that error messages and the binary agree).
pub const CONFIG_ENV_VAR: &str = "PGDUPLEX_CONFIG";

/// The configuration file used when neither `--config` nor [`CONFIG_ENV_VAR`] is
/// given.
pub const DEFAULT_CONFIG_PATH: &str = "pgduplex.toml";

/// One of the two databases of a pair. Serializes as `"left"` / `"right"` (for JSON
/// reports).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The `[left]` database.
    Left,
    /// The `[right]` database.
    Right,
}

impl Side {
    /// Both sides, left first.
    pub const BOTH: [Side; 2] = [Side::Left, Side::Right];

    /// The other side of the pair.
    pub fn other(self) -> Side {
        match self {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        }
    }

    /// The side's name as written in the file (`left` / `right`).
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Left => "left",
            Side::Right => "right",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One side's settings: `[left]` or `[right]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideConfig {
    /// Which side this is.
    pub side: Side,
    /// How to connect: the `url` with the table's `password_file` and `ssl*` keys
    /// applied on top.
    pub connection: ConnectionSettings,
}

/// A whole, validated configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from (used in messages; relative paths in the file are
    /// resolved against its directory).
    pub source: PathBuf,
    /// `[left]`: required.
    pub left: SideConfig,
    /// `[right]`: required.
    pub right: SideConfig,
    /// `[tables]`: which tables are replicated. Default: every table.
    pub tables: TableSelection,
    /// `[replication]`.
    pub replication: ReplicationConfig,
    /// `[install]`.
    pub install: InstallConfig,
    /// `[onetimecopy]`.
    pub onetimecopy: OnetimecopyConfig,
    /// `[[table]]` entries, in file order. Default: none.
    pub table_overrides: Vec<TableOverride>,
}

impl Config {
    /// Reads the file at `path` and parses it, expanding `${VAR}` from the process
    /// environment.
    ///
    /// A missing file is [`ConfigError::NotFound`], whose message tells the user that
    /// `--config` / `PGDUPLEX_CONFIG` choose another file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::NotFound {
                    path: path.to_path_buf(),
                })
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(err) => {
                let offset = err.utf8_error().valid_up_to();
                return Err(error::single_problem_at(
                    path,
                    &String::from_utf8_lossy(err.as_bytes()),
                    offset,
                    "",
                    "the file is not valid UTF-8",
                    None,
                ));
            }
        };
        Config::parse(&text, path, &|name| std::env::var(name).ok())
    }

    /// Parses configuration text. `source` names the file in messages and anchors
    /// relative paths; `env` resolves `${VAR}` references (tests pass a map).
    pub fn parse(
        text: &str,
        source: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        document::parse(text, source, env)
    }

    /// The settings of one side.
    pub fn side(&self, side: Side) -> &SideConfig {
        match side {
            Side::Left => &self.left,
            Side::Right => &self.right,
        }
    }

    /// The conflict policy for a table, given as its plain qualified name
    /// `schema.table` (the catalog's spelling joined by a dot, no quotes — the same
    /// string [`TableSelection::selects`] matches). A `[[table]]` entry with a
    /// `conflict` wins over `[replication] conflict`.
    pub fn conflict_for(&self, qualified_table: &str) -> ConflictPolicy {
        self.table_overrides
            .iter()
            .find(|o| o.conflict.is_some() && o.qualified() == qualified_table)
            .and_then(|o| o.conflict)
            .unwrap_or(self.replication.conflict)
    }

    /// Like [`Config::conflict_for`], with schema and table name given apart (exact,
    /// case-sensitive catalog names), which is unambiguous when names contain dots.
    pub fn conflict_for_table(&self, schema: &str, table: &str) -> ConflictPolicy {
        self.table_overrides
            .iter()
            .find(|o| o.conflict.is_some() && o.schema == schema && o.table == table)
            .and_then(|o| o.conflict)
            .unwrap_or(self.replication.conflict)
    }

    /// Every password in the configuration (from URLs and password files), so that a
    /// panic hook or log layer can scrub them from text that escaped our control. A
    /// password that changes under percent-encoding is listed in both forms, since a
    /// URL may carry either.
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets = Vec::new();
        for side in Side::BOTH {
            let Some(secret) = &self.side(side).connection.password else {
                continue;
            };
            let raw = secret.expose();
            for form in [raw.to_owned(), url::encode(raw)] {
                if !form.is_empty() && !secrets.contains(&form) {
                    secrets.push(form);
                }
            }
        }
        secrets
    }
}
