//! `[replication]` and `[install]`: what the daemon and the installer do, and the
//! conflict policies.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[replication] sync` when not given.
pub const DEFAULT_SYNC_NAME: &str = "main";

/// Longest sync name. The name becomes part of the advisory-lock key and of the
/// names of installed objects, which PostgreSQL truncates at 63 bytes; 32 leaves
/// room for a prefix and a table's suffix.
pub const SYNC_NAME_MAX_LEN: usize = 32;

/// Where `[replication] daemon_name` comes from when not given: the machine's host
/// name as the kernel reports it (Linux).
pub const HOST_NAME_FILE: &str = "/proc/sys/kernel/hostname";

/// `[replication] daemon_name` when not given and the host name cannot be read.
pub const FALLBACK_DAEMON_NAME: &str = "pgduplex";

/// Longest daemon name (a host name has at most 64 bytes on Linux).
pub const DAEMON_NAME_MAX_LEN: usize = 64;

/// `[replication] conflict` when not given: `left_wins`. Deterministic and
/// independent of clocks; left is usually the database being moved away from, the
/// one applications still write to while both are live.
pub const DEFAULT_CONFLICT_POLICY: ConflictPolicy = ConflictPolicy::LeftWins;

/// `[replication] allow_apply_triggers` when not given: refuse to replicate over user
/// triggers and foreign-key actions that would fire on apply.
pub const DEFAULT_ALLOW_APPLY_TRIGGERS: bool = false;

/// `[replication] batch_rows` when not given: 10,000 delta rows per batch and
/// direction. Large enough that a batch's fixed cost (a few round trips) is small per
/// row, small enough that an apply transaction holds its row locks briefly.
pub const DEFAULT_BATCH_ROWS: u32 = 10_000;

/// `[replication] batch_megabytes` when not given: 64 MiB of row data per batch and
/// direction (approximate: the row cap of the next batch is derived from the bytes
/// per row seen so far).
pub const DEFAULT_BATCH_MEGABYTES: u32 = 64;

/// `[replication] poll_interval_ms` when not given: a daemon without a backlog looks
/// for new changes every 100 ms (one query per side that covers every delta table).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// `[replication] max_clock_skew_ms` when not given: `latest_wins` refuses to run
/// when the servers' clocks differ by more than 1 s.
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_millis(1000);

/// `[install] lock_timeout_ms` when not given: 200 ms. A DDL statement waiting for a
/// lock blocks every query queued behind it, so it must give up quickly and retry.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_millis(200);

/// `[install] max_attempts` when not given: 50 (with jittered backoff, some tens of
/// seconds of trying on a busy table).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 50;

/// Who wins when a key changed on both sides since they last agreed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictPolicy {
    /// The left side's row is written to the right.
    LeftWins,
    /// The right side's row is written to the left.
    RightWins,
    /// The row changed last (capture time, `clock_timestamp()`) wins; the servers'
    /// clocks must be synchronised.
    LatestWins,
    /// Neither side is overwritten; the conflict is logged for a human.
    Ignore,
}

impl ConflictPolicy {
    /// Every policy, in documentation order.
    pub const ALL: [ConflictPolicy; 4] = [
        ConflictPolicy::LeftWins,
        ConflictPolicy::RightWins,
        ConflictPolicy::LatestWins,
        ConflictPolicy::Ignore,
    ];

    /// The policy as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictPolicy::LeftWins => "left_wins",
            ConflictPolicy::RightWins => "right_wins",
            ConflictPolicy::LatestWins => "latest_wins",
            ConflictPolicy::Ignore => "ignore",
        }
    }
}

impl fmt::Display for ConflictPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ConflictPolicy {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        ConflictPolicy::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or(())
    }
}

/// `[replication]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// `sync`: the sync's name; keys the single-writer advisory lock and the installed
    /// objects, so that one pair can later be split into several syncs. 1 to
    /// [`SYNC_NAME_MAX_LEN`] characters of `a-z`, `0-9` and `_`, starting with a
    /// letter. Default: [`DEFAULT_SYNC_NAME`] (`main`).
    pub sync: String,
    /// `daemon_name`: names the daemon in the sync's lease (`pgduplex status`
    /// shows it; a daemon waiting for the lock logs who holds it), followed by
    /// pgduplex's version and the process id. 1 to [`DAEMON_NAME_MAX_LEN`]
    /// characters, not blank, no control characters. Default (`None`): the
    /// machine's host name, read from [`HOST_NAME_FILE`] when the daemon
    /// starts, else [`FALLBACK_DAEMON_NAME`]; see [`ReplicationConfig::daemon_name`].
    pub daemon_name: Option<String>,
    /// `conflict`: the policy for tables without a `[[table]]` override. Default:
    /// [`DEFAULT_CONFLICT_POLICY`] (`left_wins`).
    pub conflict: ConflictPolicy,
    /// `allow_apply_triggers`: replicate even though user triggers or foreign-key
    /// actions would fire when changes are applied (where the apply role may not set
    /// `session_replication_role = replica`). Default:
    /// [`DEFAULT_ALLOW_APPLY_TRIGGERS`] (`false`).
    pub allow_apply_triggers: bool,
    /// `batch_rows`: delta rows read per batch and direction, at least 1. Default:
    /// [`DEFAULT_BATCH_ROWS`].
    pub batch_rows: u32,
    /// `batch_megabytes`: row data per batch and direction, at least 1. Default:
    /// [`DEFAULT_BATCH_MEGABYTES`].
    pub batch_megabytes: u32,
    /// `poll_interval_ms`: how often a daemon without a backlog looks for changes
    /// (a cycle starts at most this long after the previous one started), at least 1.
    /// Default: [`DEFAULT_POLL_INTERVAL`].
    pub poll_interval: Duration,
    /// `max_clock_skew_ms`: the largest clock difference between the servers that
    /// `latest_wins` accepts, at least 1. Default: [`DEFAULT_MAX_CLOCK_SKEW`].
    pub max_clock_skew: Duration,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            sync: DEFAULT_SYNC_NAME.to_owned(),
            daemon_name: None,
            conflict: DEFAULT_CONFLICT_POLICY,
            allow_apply_triggers: DEFAULT_ALLOW_APPLY_TRIGGERS,
            batch_rows: DEFAULT_BATCH_ROWS,
            batch_megabytes: DEFAULT_BATCH_MEGABYTES,
            poll_interval: DEFAULT_POLL_INTERVAL,
            max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
        }
    }
}

impl ReplicationConfig {
    /// The daemon's name: `daemon_name` if given, else the machine's host name
    /// ([`host_name`]).
    pub fn daemon_name(&self) -> String {
        self.daemon_name.clone().unwrap_or_else(host_name)
    }
}

/// The machine's host name, from [`HOST_NAME_FILE`] (trimmed); where it cannot
/// be read or is empty, [`FALLBACK_DAEMON_NAME`].
pub fn host_name() -> String {
    host_name_from(Path::new(HOST_NAME_FILE))
}

/// [`host_name`], read from `file`.
fn host_name_from(file: &Path) -> String {
    std::fs::read_to_string(file)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| FALLBACK_DAEMON_NAME.to_owned())
}

/// `[install]`: DDL on live tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallConfig {
    /// `lock_timeout_ms`: `lock_timeout` for each DDL statement on a live table, in
    /// milliseconds, at least 1. Default: [`DEFAULT_LOCK_TIMEOUT`] (200 ms).
    pub lock_timeout: Duration,
    /// `max_attempts`: how often a DDL statement is tried when it fails with
    /// `lock_not_available`, with jittered backoff in between; at least 1. Default:
    /// [`DEFAULT_MAX_ATTEMPTS`] (50).
    pub max_attempts: u32,
}

impl Default for InstallConfig {
    fn default() -> Self {
        InstallConfig {
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }
}

/// Whether `name` is a valid sync name.
pub(crate) fn valid_sync_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && name.len() <= SYNC_NAME_MAX_LEN
}

/// Whether `name` is a valid daemon name.
pub(crate) fn valid_daemon_name(name: &str) -> bool {
    !name.trim().is_empty()
        && name.chars().count() <= DAEMON_NAME_MAX_LEN
        && !name.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_names() {
        for ok in ["main", "a", "orders_2", &"x".repeat(SYNC_NAME_MAX_LEN)] {
            assert!(valid_sync_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Main",
            "1a",
            "_a",
            "a-b",
            "a b",
            &"x".repeat(SYNC_NAME_MAX_LEN + 1),
        ] {
            assert!(!valid_sync_name(bad), "{bad}");
        }
    }

    #[test]
    fn daemon_names() {
        for ok in [
            "db-mover-1",
            "a",
            "pod 7 (eu-west)",
            "hôte",
            &"x".repeat(DAEMON_NAME_MAX_LEN),
        ] {
            assert!(valid_daemon_name(ok), "{ok}");
        }
        for bad in [
            "",
            "   ",
            "a\nb",
            "tab\there",
            &"x".repeat(DAEMON_NAME_MAX_LEN + 1),
        ] {
            assert!(!valid_daemon_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn host_name_is_read_trimmed_with_a_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hostname");
        std::fs::write(&file, "db-host-3\n").unwrap();
        assert_eq!(host_name_from(&file), "db-host-3");
        std::fs::write(&file, " \n").unwrap();
        assert_eq!(host_name_from(&file), FALLBACK_DAEMON_NAME);
        assert_eq!(
            host_name_from(&dir.path().join("missing")),
            FALLBACK_DAEMON_NAME
        );
    }

    #[test]
    fn the_daemon_name_is_the_setting_else_the_host_name() {
        let mut config = ReplicationConfig::default();
        assert_eq!(config.daemon_name, None);
        assert_eq!(config.daemon_name(), host_name());
        config.daemon_name = Some("mover".into());
        assert_eq!(config.daemon_name(), "mover");
    }

    #[test]
    fn policies_round_trip() {
        for p in ConflictPolicy::ALL {
            assert_eq!(p.to_string().parse::<ConflictPolicy>(), Ok(p));
        }
    }
}
