//! Many rows of values as bind parameters: one text array per column, unnested
//! side by side, so a batch of keys or rows is one statement with n parameters
//! whatever its length (values never spliced into SQL).

/// `ROWS FROM (unnest($1::text[]), ..., unnest($n::text[])) AS u(a1, ..., an)`:
/// n values per row, bound as one text array per column.
pub fn param_rows(n: usize) -> String {
    let params = (1..=n)
        .map(|i| format!("pg_catalog.unnest(${i}::pg_catalog.text[])"))
        .collect::<Vec<_>>()
        .join(", ");
    let names = (1..=n)
        .map(|i| format!("a{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("ROWS FROM ({params}) AS u({names})")
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_array_per_column() {
        assert_eq!(
            super::param_rows(2),
            "ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.text[])) AS u(a1, a2)"
        );
    }
}
