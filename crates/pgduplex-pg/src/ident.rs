//! Identifier quoting: the one place where names become SQL.
//!
//! Every schema, table, column, trigger and function name that pgduplex writes into
//! a statement goes through [`quote_ident`] or [`TableName::quoted`]. Values never do:
//! they travel as bind parameters or COPY data. The only literals pgduplex writes
//! into DDL (where PostgreSQL takes no parameters) go through [`quote_literal`].

use std::fmt;

/// Quotes an identifier for SQL: always double-quoted, inner quotes doubled, so
/// mixed case, spaces, dots, quotes and reserved words survive.
pub fn quote_ident(name: &str) -> String {
    postgres_protocol::escape::escape_identifier(name)
}

/// Quotes a string literal for DDL, where PostgreSQL accepts no bind parameters
/// (a trigger's `WHEN` clause, a function body). Handles backslashes with `E''`.
pub fn quote_literal(value: &str) -> String {
    postgres_protocol::escape::escape_literal(value)
}

/// A schema-qualified relation name. `Display` prints the plain `schema.name` for
/// logs and messages; [`TableName::quoted`] is what goes into SQL.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl TableName {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// `"schema"."name"`, safe to put into SQL.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// `schema.name` without quoting: what the table selection regexes match and
    /// what `[[table]] name` compares against.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Comma-separated quoted column list, optionally prefixed (`NEW.`, `t.`).
pub fn column_list<S: AsRef<str>>(columns: &[S], prefix: &str) -> String {
    columns
        .iter()
        .map(|c| format!("{prefix}{}", quote_ident(c.as_ref())))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_hard_names() {
        assert_eq!(quote_ident("plain"), "\"plain\"");
        assert_eq!(quote_ident("Mixed Case"), "\"Mixed Case\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_ident("select"), "\"select\"");
        let t = TableName::new("My.Schema", "ta\"ble");
        assert_eq!(t.quoted(), "\"My.Schema\".\"ta\"\"ble\"");
        assert_eq!(t.to_string(), "My.Schema.ta\"ble");
    }

    #[test]
    fn quotes_literals() {
        assert_eq!(quote_literal("app"), "'app'");
        assert_eq!(quote_literal("o'neil"), "'o''neil'");
        assert!(
            quote_literal("a\\b").starts_with(" E'") || quote_literal("a\\b").starts_with("E'")
        );
    }

    #[test]
    fn column_lists() {
        assert_eq!(column_list(&["a", "B c"], "NEW."), "NEW.\"a\", NEW.\"B c\"");
    }
}
