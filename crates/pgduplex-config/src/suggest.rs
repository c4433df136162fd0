//! "Did you mean ...?" for unknown keys, URL parameters and enum values.
//!
//! Only names from pgduplex's own vocabulary are ever suggested, so a suggestion
//! never echoes what the user wrote.

/// The candidate closest to `input`, if it is close enough to be a likely typo.
///
/// Jaro-Winkler ranks the candidates (it favours a shared prefix, which is how
/// `sslrootcrt` or `lock_timeout` relate to their keys); a candidate is accepted when
/// it is within two edits (one for short words), or when Jaro-Winkler is very high.
pub(crate) fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let input = input.to_lowercase();
    let (best, score) = candidates
        .into_iter()
        .map(|c| (c, strsim::jaro_winkler(&input, c)))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    let edits = strsim::levenshtein(&input, best);
    let max_edits = if input.chars().count() <= 4 { 1 } else { 2 };
    (edits <= max_edits || score >= 0.9).then_some(best)
}

/// `did you mean `x`?` for a hint, if there is a close candidate.
pub(crate) fn hint<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    did_you_mean(input, candidates).map(|c| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIDE: &[&str] = &[
        "url",
        "password_file",
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
    ];

    #[test]
    fn typos_are_matched() {
        assert_eq!(did_you_mean("urll", SIDE.iter().copied()), Some("url"));
        assert_eq!(did_you_mean("URL", SIDE.iter().copied()), Some("url"));
        assert_eq!(
            did_you_mean("ssl_mode", SIDE.iter().copied()),
            Some("sslmode")
        );
        assert_eq!(
            did_you_mean("sslrootcrt", SIDE.iter().copied()),
            Some("sslrootcert")
        );
        assert_eq!(
            did_you_mean("passwordfile", SIDE.iter().copied()),
            Some("password_file")
        );
        assert_eq!(
            did_you_mean("lock_timeout", ["lock_timeout_ms", "max_attempts"]),
            Some("lock_timeout_ms")
        );
        assert_eq!(
            did_you_mean("inclde", ["include", "exclude"]),
            Some("include")
        );
        assert_eq!(
            did_you_mean("verify_full", ["verify-ca", "verify-full", "require"]),
            Some("verify-full")
        );
    }

    #[test]
    fn unrelated_words_are_not() {
        assert_eq!(did_you_mean("tls", SIDE.iter().copied()), None);
        assert_eq!(did_you_mean("database", SIDE.iter().copied()), None);
        assert_eq!(did_you_mean("x", ["url"]), None);
        assert_eq!(did_you_mean("anything", std::iter::empty()), None);
    }
}
