//! `[[table]]` entries: names and duplicates.

use pgduplex_config::ConflictPolicy;

use crate::support::{minimal, ok, problem, problems};

#[test]
fn names_follow_sql_identifier_rules() {
    let config = ok(&minimal(
        r#"
[[table]]
name = 'sales."Order Items"'
conflict = "ignore"
[[table]]
name = '"a""b".c'
conflict = "right_wins"
"#,
    ));
    assert_eq!(config.table_overrides[0].schema, "sales");
    assert_eq!(config.table_overrides[0].table, "Order Items");
    assert_eq!(config.table_overrides[0].qualified(), "sales.Order Items");
    assert_eq!(
        config.conflict_for("sales.Order Items"),
        ConflictPolicy::Ignore
    );
    assert_eq!(config.conflict_for("a\"b.c"), ConflictPolicy::RightWins);
    assert_eq!(
        config.conflict_for("sales.order items"),
        ConflictPolicy::LeftWins
    );
}

#[test]
fn bad_names() {
    for (name, message) in [
        ("accounts", "must be a qualified name `schema.table`"),
        ("a.b.c", "exactly one dot outside quotes"),
        ("Public.accounts", "capital letters"),
        ("public.\\\"open", "no closing"),
    ] {
        let p = problem(&minimal(&format!("[[table]]\nname = \"{name}\"\n")));
        assert_eq!(p.key, "table[0].name");
        assert_eq!((p.line, p.column), (Some(7), Some(8)));
        assert!(p.message.contains(message), "{name}: {p}");
        assert!(!p.to_string().contains(name), "{p}");
    }
}

#[test]
fn duplicates_are_an_error() {
    let ps = problems(&minimal(
        "[[table]]\nname = \"public.a\"\n[[table]]\nname = \"public.b\"\n[[table]]\nname = 'public.\"a\"'\n",
    ));
    assert_eq!(ps.len(), 1, "{ps:#?}");
    assert_eq!(ps[0].key, "table[2].name");
    assert_eq!(ps[0].line, Some(11));
    assert_eq!(ps[0].message, "names the same table as table[0] (line 7)");
}

#[test]
fn name_is_required() {
    let p = problem(&minimal("[[table]]\nconflict = \"ignore\"\n"));
    assert_eq!(p.key, "table[0].name");
    assert_eq!(p.line, Some(6));
}
