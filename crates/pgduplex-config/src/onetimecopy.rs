//! `[onetimecopy]`: how the initial copy runs, from `pgduplex onetimecopy` and at
//! the daemon's start. Command-line options override these.

use std::fmt;

use crate::Side;

/// `[onetimecopy] mode` when not given: copy only into empty target tables.
pub const DEFAULT_COPY_MODE: CopyMode = CopyMode::IfEmpty;

/// `[onetimecopy] from` when not given: the left side is the source.
pub const DEFAULT_COPY_FROM: Side = Side::Left;

/// `[onetimecopy] jobs` when not given: 4 tables or ranges at once. The target's
/// write path is the limit on most machines; more jobs than the target has cores
/// only adds contention.
pub const DEFAULT_COPY_JOBS: u32 = 4;

/// `[onetimecopy] range_rows` when not given: a table estimated at more than this
/// many rows (and with an integer first key column) is split into key ranges of
/// about this many rows, copied at once. Large, because a table copied whole is
/// cheaper to write: it is emptied in its copy transaction, so it gets `COPY
/// FREEZE`, no capture trigger and its indexes built after the rows; ranges lose
/// all three (measured: bench/onetimecopy/RESULTS.md).
pub const DEFAULT_RANGE_ROWS: u32 = 10_000_000;

/// `[onetimecopy] defer_indexes` when not given.
pub const DEFAULT_DEFER_INDEXES: bool = false;

/// `[onetimecopy] fk` when not given.
pub const DEFAULT_FK_STRATEGY: FkStrategy = FkStrategy::Auto;

/// `[onetimecopy] copy_format` when not given: binary COPY where it is safe.
pub const DEFAULT_COPY_FORMAT: CopyFormat = CopyFormat::Auto;

/// `[onetimecopy] rebuild_indexes` when not given: a table emptied in its copy
/// transaction has its indexes built after the rows (measured: 1.36× faster on
/// pgbench than rows copied into the primary key, bench/onetimecopy/RESULTS.md).
pub const DEFAULT_REBUILD_INDEXES: bool = true;

/// What to do with target tables that already hold rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CopyMode {
    /// Refuse (changing nothing) when a target table holds rows.
    IfEmpty,
    /// Empty the target tables first.
    Truncate,
    /// Never copy (the daemon's start skips the copy; the sides were filled
    /// another way).
    Never,
}

impl CopyMode {
    pub const ALL: [CopyMode; 3] = [CopyMode::IfEmpty, CopyMode::Truncate, CopyMode::Never];

    pub fn as_str(self) -> &'static str {
        match self {
            CopyMode::IfEmpty => "if-empty",
            CopyMode::Truncate => "truncate",
            CopyMode::Never => "never",
        }
    }
}

impl fmt::Display for CopyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the copy gets past the target's foreign keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FkStrategy {
    /// `replica` where the target role may set `session_replication_role`, else
    /// `order`.
    Auto,
    /// Parents before children; tables linked by foreign keys are read from one
    /// shared snapshot so that they agree.
    Order,
    /// `session_replication_role = replica` on the target: foreign keys are not
    /// checked while copying (needs a role that may set it).
    Replica,
    /// Drop the foreign keys (definitions saved on the target first), copy, add
    /// them back `NOT VALID`, then `VALIDATE`.
    DropReadd,
}

impl FkStrategy {
    pub const ALL: [FkStrategy; 4] = [
        FkStrategy::Auto,
        FkStrategy::Order,
        FkStrategy::Replica,
        FkStrategy::DropReadd,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FkStrategy::Auto => "auto",
            FkStrategy::Order => "order",
            FkStrategy::Replica => "replica",
            FkStrategy::DropReadd => "drop-readd",
        }
    }
}

impl fmt::Display for FkStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The COPY format of the initial copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CopyFormat {
    /// Binary for a table whose copied columns all have a built-in type with a
    /// binary form, between servers of the same major version (binary arrays
    /// and composites carry type OIDs, which differ between servers for
    /// user-defined types); text for the others.
    Auto,
    /// Text for every table: slower to parse, for measurements or as an escape
    /// hatch.
    Text,
}

impl CopyFormat {
    pub const ALL: [CopyFormat; 2] = [CopyFormat::Auto, CopyFormat::Text];

    pub fn as_str(self) -> &'static str {
        match self {
            CopyFormat::Auto => "auto",
            CopyFormat::Text => "text",
        }
    }
}

impl fmt::Display for CopyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[onetimecopy]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnetimecopyConfig {
    /// `mode`: `if-empty`, `truncate` or `never`. Default: [`DEFAULT_COPY_MODE`].
    pub mode: CopyMode,
    /// `from`: the source side, `left` or `right`. Default: [`DEFAULT_COPY_FROM`].
    pub from: Side,
    /// `jobs`: tables or ranges copied at once, at least 1. Default:
    /// [`DEFAULT_COPY_JOBS`].
    pub jobs: u32,
    /// `range_rows`: estimated rows per key range of a split table, at least 1.
    /// Default: [`DEFAULT_RANGE_ROWS`].
    pub range_rows: u32,
    /// `defer_indexes`: drop the target's secondary indexes before copying and
    /// rebuild them after. Default: [`DEFAULT_DEFER_INDEXES`].
    pub defer_indexes: bool,
    /// `fk`: `auto`, `order`, `replica` or `drop-readd`. Default:
    /// [`DEFAULT_FK_STRATEGY`].
    pub fk: FkStrategy,
    /// `copy_format`: `auto` or `text`. Default: [`DEFAULT_COPY_FORMAT`].
    pub copy_format: CopyFormat,
    /// `rebuild_indexes`: a table emptied in its copy transaction (copied
    /// whole, not partitioned, not referenced by a foreign key) has its indexes
    /// dropped before the rows and built after them, in that transaction;
    /// `false` copies the rows into the existing indexes. Default:
    /// [`DEFAULT_REBUILD_INDEXES`].
    pub rebuild_indexes: bool,
}

impl Default for OnetimecopyConfig {
    fn default() -> Self {
        OnetimecopyConfig {
            mode: DEFAULT_COPY_MODE,
            from: DEFAULT_COPY_FROM,
            jobs: DEFAULT_COPY_JOBS,
            range_rows: DEFAULT_RANGE_ROWS,
            defer_indexes: DEFAULT_DEFER_INDEXES,
            fk: DEFAULT_FK_STRATEGY,
            copy_format: DEFAULT_COPY_FORMAT,
            rebuild_indexes: DEFAULT_REBUILD_INDEXES,
        }
    }
}
