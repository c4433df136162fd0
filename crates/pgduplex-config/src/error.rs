//! The crate's error type and the mapping from byte offsets to `line:column`.
//!
//! A [`Problem`] carries a position, a dotted key path and a message that never
//! contains a value from the file: a `url` line holds a password, and an error
//! message ends up in logs, CI output and bug reports.

use std::fmt;
use std::path::{Path, PathBuf};

/// Everything that can go wrong while loading a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file does not exist.
    #[error(
        "configuration file {} not found; choose another with --config or the {} environment variable",
        path.display(),
        crate::CONFIG_ENV_VAR
    )]
    NotFound {
        /// The path that was tried.
        path: PathBuf,
    },
    /// The configuration file exists but could not be read.
    #[error(
        "cannot read configuration file {}; choose another with --config or the {} environment variable",
        path.display(),
        crate::CONFIG_ENV_VAR
    )]
    Read {
        /// The path that was tried.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid configuration. Every problem found is
    /// listed, in file order; `Display` prints one per line.
    #[error("{}", DisplayProblems(problems))]
    Invalid {
        /// At least one problem.
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The problems of an [`ConfigError::Invalid`] error; empty for I/O errors.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems } => problems,
            _ => &[],
        }
    }
}

struct DisplayProblems<'a>(&'a [Problem]);

impl fmt::Display for DisplayProblems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// One thing wrong with a configuration file.
///
/// Displayed as `file:line:column: key.path: message; hint`, e.g.
/// ``pgduplex.toml:3:1: left.urll: unknown key; did you mean `url`?``.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The configuration file, as given to [`crate::Config::load`] / `parse`.
    pub file: PathBuf,
    /// 1-based line, when the problem has a position in the file.
    pub line: Option<usize>,
    /// 1-based column in characters, when the problem has a position in the file.
    pub column: Option<usize>,
    /// Dotted key path (`left.sslmode`, `table[2].conflict`, `tables.include[0]`;
    /// indexes count from 0); empty for problems that belong to no key (TOML syntax
    /// errors).
    pub key: String,
    /// What is wrong. Never contains a value from the file.
    pub message: String,
    /// What to do about it, e.g. ``did you mean `url`?``.
    pub hint: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

/// Turns byte offsets of one text into 1-based `(line, column)`, columns counted in
/// characters (what editors show).
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex { text, line_starts }
    }

    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset) - 1;
        let start = self.line_starts[line];
        // `offset` may fall inside a multi-byte character when it comes from a
        // character-based span; count only whole characters before it.
        let column = self.text[start..]
            .char_indices()
            .take_while(|&(i, _)| start + i < offset)
            .count();
        (line + 1, column + 1)
    }
}

/// A `ConfigError::Invalid` with one problem at a byte offset of `text`.
pub(crate) fn single_problem_at(
    file: &Path,
    text: &str,
    offset: usize,
    key: &str,
    message: &str,
    hint: Option<String>,
) -> ConfigError {
    let (line, column) = LineIndex::new(text).position(offset);
    ConfigError::Invalid {
        problems: vec![Problem {
            file: file.to_path_buf(),
            line: Some(line),
            column: Some(column),
            key: key.to_owned(),
            message: message.to_owned(),
            hint,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "a = 1\nbé = \"x\"\n\nz";
        let index = LineIndex::new(text);
        assert_eq!(index.position(0), (1, 1));
        assert_eq!(index.position(4), (1, 5));
        assert_eq!(index.position(6), (2, 1));
        // "bé = " is 6 bytes but 5 characters.
        assert_eq!(index.position(6 + 6), (2, 6));
        assert_eq!(index.position(text.len() - 1), (4, 1));
        assert_eq!(index.position(text.len() + 10), (4, 2));
    }

    #[test]
    fn display_has_file_position_key_message_and_hint() {
        let problem = Problem {
            file: PathBuf::from("pgduplex.toml"),
            line: Some(3),
            column: Some(1),
            key: "left.urll".into(),
            message: "unknown key".into(),
            hint: Some("did you mean `url`?".into()),
        };
        assert_eq!(
            problem.to_string(),
            "pgduplex.toml:3:1: left.urll: unknown key; did you mean `url`?"
        );
        let bare = Problem {
            line: None,
            column: None,
            key: String::new(),
            hint: None,
            ..problem
        };
        assert_eq!(bare.to_string(), "pgduplex.toml: unknown key");
    }
}
