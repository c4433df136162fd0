//! Helpers: parse a text with a fixed environment, and assert on problems.

use std::collections::HashMap;
use std::path::Path;

use pgduplex_config::{Config, ConfigError, Problem};

/// The environment every test sees.
pub fn env() -> HashMap<&'static str, &'static str> {
    HashMap::from([
        ("LEFT_PASSWORD", "l3ft-Pa55"),
        ("RIGHT_PASSWORD", "r1ght-Pa55"),
        ("DB_HOST", "db.internal"),
        ("ATTEMPTS", "9"),
    ])
}

pub fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_at(text, Path::new("pgduplex.toml"))
}

pub fn parse_at(text: &str, source: &Path) -> Result<Config, ConfigError> {
    let env = env();
    Config::parse(text, source, &|name| env.get(name).map(|v| v.to_string()))
}

pub fn ok(text: &str) -> Config {
    parse(text).unwrap_or_else(|e| panic!("expected a valid config:\n{e}"))
}

pub fn problems(text: &str) -> Vec<Problem> {
    match parse(text) {
        Ok(_) => panic!("expected errors, config is valid:\n{text}"),
        Err(e) => {
            assert!(!e.problems().is_empty(), "{e}");
            e.problems().to_vec()
        }
    }
}

/// The single problem of `text`.
pub fn problem(text: &str) -> Problem {
    let problems = problems(text);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    problems.into_iter().next().unwrap()
}

/// The problem with the given key path.
pub fn problem_at<'a>(problems: &'a [Problem], key: &str) -> &'a Problem {
    problems
        .iter()
        .find(|p| p.key == key)
        .unwrap_or_else(|| panic!("no problem at {key}: {problems:#?}"))
}

/// A minimal valid file, followed by `extra`.
pub fn minimal(extra: &str) -> String {
    format!(
        "[left]\nurl = \"postgres://app:${{LEFT_PASSWORD}}@left.example.com/app\"\n\n\
         [right]\nurl = \"postgres://app:${{RIGHT_PASSWORD}}@right.example.com/app\"\n{extra}"
    )
}
