//! `[onetimecopy]`: defaults, every key read, bad values and unknown keys reported.

use pgduplex_config::{
    CopyFormat, CopyMode, FkStrategy, Side, DEFAULT_COPY_FORMAT, DEFAULT_COPY_FROM,
    DEFAULT_COPY_JOBS, DEFAULT_COPY_MODE, DEFAULT_DEFER_INDEXES, DEFAULT_FK_STRATEGY,
    DEFAULT_RANGE_ROWS, DEFAULT_REBUILD_INDEXES,
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
    assert_eq!(c.copy_format, DEFAULT_COPY_FORMAT);
    assert_eq!(c.copy_format, CopyFormat::Auto);
    assert_eq!(c.rebuild_indexes, DEFAULT_REBUILD_INDEXES);
    assert!(c.rebuild_indexes);
}

#[test]
fn every_key_is_read() {
    let c = ok(&minimal(
        "[onetimecopy]\nmode = \"never\"\nfrom = \"right\"\njobs = 7\nrange_rows = 500\n\
         defer_indexes = true\nfk = \"drop-readd\"\ncopy_format = \"text\"\n\
         rebuild_indexes = false\n",
    ))
    .onetimecopy;
    assert_eq!(c.mode, CopyMode::Never);
    assert_eq!(c.from, Side::Right);
    assert_eq!(c.jobs, 7);
    assert_eq!(c.range_rows, 500);
    assert!(c.defer_indexes);
    assert_eq!(c.fk, FkStrategy::DropReadd);
    assert_eq!(c.copy_format, CopyFormat::Text);
    assert!(!c.rebuild_indexes);
}

#[test]
fn copy_format_values() {
    for (text, format) in [("auto", CopyFormat::Auto), ("text", CopyFormat::Text)] {
        let c = ok(&minimal(&format!(
            "[onetimecopy]\ncopy_format = \"{text}\"\n"
        )));
        assert_eq!(c.onetimecopy.copy_format, format);
        assert_eq!(format.as_str(), text);
    }
}

#[test]
fn bad_copy_format_and_rebuild_indexes() {
    let ps = problems(&minimal(
        "[onetimecopy]\ncopy_format = \"binary\"\nrebuild_indexes = \"no\"\n",
    ));
    assert_eq!(ps.len(), 2, "{ps:#?}");
    let p = problem_at(&ps, "onetimecopy.copy_format");
    assert_eq!(p.message, "unknown value");
    assert_eq!(p.hint.as_deref(), Some("use one of: auto, text"));
    assert_eq!(p.line, Some(7));
    let p = problem_at(&ps, "onetimecopy.rebuild_indexes");
    assert_eq!(
        p.message,
        "expected a boolean (true or false), found a string"
    );
    assert_eq!(p.line, Some(8));
    // A typo in a value or in a key is suggested the right spelling.
    let ps = problems(&minimal(
        "[onetimecopy]\ncopy_format = \"txt\"\nrebuild_index = false\n",
    ));
    let p = problem_at(&ps, "onetimecopy.copy_format");
    assert_eq!(p.hint.as_deref(), Some("did you mean `text`?"));
    let p = problem_at(&ps, "onetimecopy.rebuild_index");
    assert_eq!(p.message, "unknown key");
    assert_eq!(p.hint.as_deref(), Some("did you mean `rebuild_indexes`?"));
    // In another section, the hint says where the key belongs.
    let ps = problems(&minimal("[replication]\ncopy_format = \"text\"\n"));
    let p = problem_at(&ps, "replication.copy_format");
    assert_eq!(
        p.hint.as_deref(),
        Some("`copy_format` belongs in [onetimecopy]")
    );
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
