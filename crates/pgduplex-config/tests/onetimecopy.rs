//! `[onetimecopy]`: defaults, every key read, bad values and unknown keys reported.

use pgduplex_config::{
    CopyMode, FkStrategy, Side, DEFAULT_COPY_FROM, DEFAULT_COPY_JOBS, DEFAULT_COPY_MODE,
    DEFAULT_DEFER_INDEXES, DEFAULT_FK_STRATEGY, DEFAULT_RANGE_ROWS,
};

use crate::support::{minimal, ok, problem_at, problems};

#[test]
fn defaults_when_absent() {
    let c = ok(&minimal("")).onetimecopy;
    assert_eq!(c.mode, DEFAULT_COPY_MODE);
    assert_eq!(c.mode, CopyMode::IfEmpty);
    assert_eq!(c.from, DEFAULT_COPY_FROM);
    assert_eq!(c.jobs, DEFAULT_COPY_JOBS);
    assert_eq!(c.range_rows, DEFAULT_RANGE_ROWS);
    assert_eq!(c.defer_indexes, DEFAULT_DEFER_INDEXES);
    assert_eq!(c.fk, DEFAULT_FK_STRATEGY);
}

#[test]
fn every_key_is_read() {
    let c = ok(&minimal(
        "[onetimecopy]\nmode = \"never\"\nfrom = \"right\"\njobs = 7\nrange_rows = 500\n\
         defer_indexes = true\nfk = \"drop-readd\"\n",
    ))
    .onetimecopy;
    assert_eq!(c.mode, CopyMode::Never);
    assert_eq!(c.from, Side::Right);
    assert_eq!(c.jobs, 7);
    assert_eq!(c.range_rows, 500);
    assert!(c.defer_indexes);
    assert_eq!(c.fk, FkStrategy::DropReadd);
}

#[test]
fn bad_values_and_unknown_keys() {
    let ps = problems(&minimal(
        "[onetimecopy]\nmode = \"if_empty\"\njobs = 0\nfk = \"nope\"\nparallel = 3\n",
    ));
    let p = problem_at(&ps, "onetimecopy.mode");
    assert_eq!(p.hint.as_deref(), Some("did you mean `if-empty`?"));
    problem_at(&ps, "onetimecopy.jobs");
    problem_at(&ps, "onetimecopy.fk");
    let p = problem_at(&ps, "onetimecopy.parallel");
    assert_eq!(p.message, "unknown key");
}
