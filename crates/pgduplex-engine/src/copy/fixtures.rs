//! Test fixtures of the copy's unit tests: catalog entries and recorded
//! progress, built without a database.

use pgduplex_pg::catalog::{Column, ForeignKey, Key, KeySource, Table, TableKind};
use pgduplex_pg::TableName;

use super::plan::{Part, Recorded, RecordedPart};

pub(super) fn column(name: &str, type_name: &str) -> Column {
    Column {
        name: name.into(),
        type_name: type_name.into(),
        not_null: false,
        generated: false,
        identity: None,
    }
}

/// `public.<name>`: an ordinary table keyed by `id bigint`, with a text
/// column and a generated one.
pub(super) fn table(name: &str, oid: u32) -> Table {
    Table {
        oid,
        name: TableName::new("public", name),
        kind: TableKind::Ordinary,
        columns: vec![
            column("id", "bigint"),
            column("note", "text"),
            Column {
                generated: true,
                ..column("total", "numeric")
            },
        ],
        key: Some(Key {
            columns: vec!["id".into()],
            source: KeySource::PrimaryKey(format!("{name}_pkey")),
            deferrable: false,
        }),
        size_bytes: 0,
        estimated_rows: 0,
        partitions: Vec::new(),
        partition_oids: Vec::new(),
        owned: true,
        missing_privileges: Vec::new(),
        user_triggers: Vec::new(),
    }
}

pub(super) fn fk(table: &str, references: &str) -> ForeignKey {
    ForeignKey {
        name: format!("{table}_{references}_fkey"),
        table: TableName::new("public", table),
        columns: vec!["parent".into()],
        references: TableName::new("public", references),
        referenced_columns: vec!["id".into()],
        on_update: 'a',
        on_delete: 'a',
        deferrable: false,
    }
}

pub(super) fn name(n: &str) -> TableName {
    TableName::new("public", n)
}

/// Recorded progress: per table, its parts and whether each is done.
pub(super) fn recorded(tables: &[(&str, Vec<(Part, bool)>)]) -> Recorded {
    tables
        .iter()
        .map(|(n, parts)| {
            let parts = parts
                .iter()
                .map(|(part, done)| RecordedPart {
                    part: part.clone(),
                    done: *done,
                })
                .collect();
            (name(n), parts)
        })
        .collect()
}
