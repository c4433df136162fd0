//! Which tables are replicated (`[tables]`) and per-table options (`[[table]]`).
//!
//! Both match tables by their *plain* qualified name: the catalog's schema and table
//! names, unquoted, joined by a dot (`public.accounts`, `My Schema.My.Table`).

use regex::Regex;

use crate::replication::ConflictPolicy;

/// `[tables]`: regular expressions matched against `schema.table`.
///
/// A table is selected when it matches at least one `include` pattern (or `include`
/// is not given) and no `exclude` pattern. Patterns are not anchored implicitly:
/// write `^` and `$` for a whole-name match. Schemas that are not user data
/// (`pg_catalog`, `information_schema`, pgduplex's own schema) are left out by the
/// catalog code whatever these say.
#[derive(Debug, Clone, Default)]
pub struct TableSelection {
    include: Vec<Regex>,
    exclude: Vec<Regex>,
}

impl TableSelection {
    /// A selection from compiled patterns; an empty `include` selects every table.
    pub fn new(include: Vec<Regex>, exclude: Vec<Regex>) -> Self {
        TableSelection { include, exclude }
    }

    /// `include`: default none given, meaning every table.
    pub fn include(&self) -> &[Regex] {
        &self.include
    }

    /// `exclude`: default none.
    pub fn exclude(&self) -> &[Regex] {
        &self.exclude
    }

    /// Whether the table with plain qualified name `schema.table` is replicated.
    pub fn selects(&self, qualified: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|r| r.is_match(qualified)))
            && !self.exclude.iter().any(|r| r.is_match(qualified))
    }
}

/// A `[[table]]` entry: options for one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableOverride {
    /// The schema, as in the catalog (quotes removed, unquoted names lower-case).
    pub schema: String,
    /// The table name, as in the catalog.
    pub table: String,
    /// `conflict`: this table's policy. Default: none, `[replication] conflict`
    /// applies.
    pub conflict: Option<ConflictPolicy>,
}

impl TableOverride {
    /// The plain qualified name `schema.table`, as [`TableSelection::selects`] and
    /// [`crate::Config::conflict_for`] take it.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }
}

/// Why a `[[table]] name` is not a qualified name. Messages describe the rule, never
/// the name.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NameError {
    pub(crate) message: &'static str,
    pub(crate) hint: Option<&'static str>,
}

/// Parses `schema.table` with SQL identifier rules: each part is either unquoted
/// (letters, digits, `_`, `$`, not starting with a digit or `$`) or double-quoted
/// (any characters, `""` for a quote), so `"My Schema"."My.Table"` names schema
/// `My Schema` and table `My.Table`.
///
/// PostgreSQL folds unquoted names to lower case; rather than silently matching
/// `public.Accounts` to `public.accounts`, an unquoted name with capitals is refused
/// and the user asked to either write it in lower case or quote it.
pub(crate) fn parse_qualified_name(name: &str) -> Result<(String, String), NameError> {
    let (schema, rest) = identifier(name)?;
    let Some(rest) = rest.strip_prefix('.') else {
        return Err(NameError {
            message: "must be a qualified name `schema.table`",
            hint: Some("quote names that contain dots or spaces: `\"My Schema\".\"My.Table\"`"),
        });
    };
    let (table, rest) = identifier(rest)?;
    if !rest.is_empty() {
        return Err(NameError {
            message: "must be `schema.table`, with exactly one dot outside quotes",
            hint: Some("quote names that contain dots: `public.\"my.table\"`"),
        });
    }
    Ok((schema, table))
}

/// One identifier at the start of `s`, and what follows it.
fn identifier(s: &str) -> Result<(String, &str), NameError> {
    if let Some(quoted) = s.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if quoted[i + 1..].starts_with('"') {
                    name.push('"');
                    chars.next();
                    continue;
                }
                if name.is_empty() {
                    return Err(NameError {
                        message: "a quoted name is empty",
                        hint: None,
                    });
                }
                return Ok((name, &quoted[i + 1..]));
            }
            name.push(c);
        }
        return Err(NameError {
            message: "a quoted name has no closing `\"`",
            hint: Some("write a `\"` inside a quoted name as `\"\"`"),
        });
    }
    let end = s
        .char_indices()
        .find(|&(_, c)| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .map_or(s.len(), |(i, _)| i);
    let (name, rest) = s.split_at(end);
    let Some(first) = name.chars().next() else {
        return Err(NameError {
            message: "must be a qualified name `schema.table`",
            hint: Some("quote names that contain dots or spaces: `\"My Schema\".\"My.Table\"`"),
        });
    };
    if first.is_ascii_digit() || first == '$' {
        return Err(NameError {
            message: "an unquoted name cannot begin with a digit or `$`",
            hint: Some("quote the name"),
        });
    }
    if name.chars().any(char::is_uppercase) {
        return Err(NameError {
            message: "an unquoted name has capital letters, which PostgreSQL folds to lower case",
            hint: Some(
                "write it in lower case, or quote it to keep the capitals: `public.\"Accounts\"`",
            ),
        });
    }
    Ok((name.to_owned(), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &str) -> (String, String) {
        parse_qualified_name(s).unwrap_or_else(|e| panic!("{s}: {e:?}"))
    }

    #[test]
    fn qualified_names() {
        assert_eq!(
            names("public.accounts"),
            ("public".into(), "accounts".into())
        );
        assert_eq!(
            names("\"My Schema\".\"My.Table\""),
            ("My Schema".into(), "My.Table".into())
        );
        assert_eq!(names("s.\"a\"\"b\""), ("s".into(), "a\"b".into()));
        assert_eq!(names("_s$1.t_2"), ("_s$1".into(), "t_2".into()));
        assert_eq!(names("größe.maß"), ("größe".into(), "maß".into()));
    }

    #[test]
    fn bad_names() {
        for bad in [
            "accounts",
            "a.b.c",
            "public.",
            ".t",
            "\"\".t",
            "\"open.t",
            "1s.t",
            "Public.accounts",
            "public.accounts ",
            "public .accounts",
            "",
        ] {
            assert!(parse_qualified_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn selection() {
        let all = TableSelection::default();
        assert!(all.selects("public.anything"));
        let re = |s: &str| Regex::new(s).unwrap();
        let sel = TableSelection::new(vec![re(r"^public\..*$")], vec![re(r"^public\.tmp_")]);
        assert!(sel.selects("public.accounts"));
        assert!(!sel.selects("public.tmp_x"));
        assert!(!sel.selects("other.accounts"));
        let only_exclude = TableSelection::new(vec![], vec![re("^audit\\.")]);
        assert!(only_exclude.selects("public.a"));
        assert!(!only_exclude.selects("audit.log"));
    }
}
