//! Property tests of the config loader: on any text, and on the example config broken in
//! TOML-ish ways, loading returns a config or a list of problems that point inside the file.

use std::path::Path;

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::Config as ProptestConfig;

use super::Config;

/// The example config that ships with the repository.
const EXAMPLE: &str = include_str!("../../../examples/exporter.toml");

/// `cases` cases a property; no regression files, so a run leaves nothing behind to commit.
fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Loads `text` and checks what any answer must hold: an error has at least one problem, and
/// every problem with a line names a line of the file (1 up to its number of lines).
fn check_load(text: &str) -> Result<(), TestCaseError> {
    let Err(error) = Config::parse(Path::new("exporter.toml"), text) else {
        return Ok(());
    };
    prop_assert!(!error.problems.is_empty(), "an error without problems");
    let lines = text.lines().count().max(1);
    for problem in &error.problems {
        if let Some(line) = problem.line {
            prop_assert!(
                (1..=lines).contains(&line),
                "line {} of a {}-line file: {}",
                line,
                lines,
                problem.message
            );
        }
    }
    Ok(())
}

/// Pieces of TOML syntax and of this config's keys and values.
fn toml_piece() -> impl Strategy<Value = String> {
    let mut pieces = vec![
        "[", "]", "[[", "]]", "{", "}", "=", " = ", ",", ".", "\"", "'", "'''", "\"\"\"", "#",
        "\n", "\r\n", "\t", " ", "\\", "\\u",
    ];
    let words = r#"[[profile]] [server] name type "csv" "postback" routes mappings triggers field
        value 1 -1 1.5 nan inf true 1979-05-27T07:32:00Z env: é 🎉"#;
    pieces.extend(words.split_whitespace());
    prop_oneof![
        select(pieces).prop_map(String::from),
        any::<char>().prop_map(String::from),
    ]
}

/// Any text, and text made of TOML pieces.
fn any_text() -> impl Strategy<Value = String> {
    let pieces = prop::collection::vec(toml_piece(), 0..40).prop_map(|p| p.concat());
    prop_oneof![any::<String>(), pieces]
}

/// A value a key of this config may be given.
fn toml_value() -> impl Strategy<Value = String> {
    let values = r#"0 | -1 | 15 | 1e400 | -0.0 | nan | inf | 4294967296 | 9223372036854775807 | true
        | "" | " " | "x" | "env:EXPORTER_PROPTEST_UNSET" | "[unclosed" | "[ ]" | "../x"
        | "header:Bad Name" | "http://" | "sqlite://" | ";;" | "\"" | "{nope}.csv" | 1979-05-27
        | [] | [1, "a"] | [[]] | {} | { triggers = [] } | { name = "a" }"#;
    let values: Vec<&str> = values.split('|').map(str::trim).collect();
    prop_oneof![
        select(values).prop_map(String::from),
        any::<String>().prop_map(|s| toml::Value::String(s).to_string()),
    ]
}

/// One change to a config text.
#[derive(Debug, Clone)]
enum Mutation {
    /// Removes the line at this index (modulo the line count).
    DeleteLine(usize),
    /// Writes the line at this index twice.
    DuplicateLine(usize),
    /// Swaps two lines.
    SwapLines(usize, usize),
    /// Gives one `key = value` of the file (the n-th, modulo their count) another value; the
    /// key may be in a table, an inline table or an array of them.
    ReplaceValue(usize, String),
    /// Puts text at a character position.
    Insert(usize, String),
    /// Removes some characters from a position.
    Remove(usize, usize),
    /// Cuts the file at a character position.
    Truncate(usize),
    /// Adds a line after the line at this index.
    AddLine(usize, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let line = || any::<usize>();
    let key_line = (
        select(vec!["name", "type", "url", "dir", "excel", "max_attempts"]),
        toml_value(),
    )
        .prop_map(|(key, value)| format!("{key} = {value}"));
    let headers = ["[[profile]]", "[server]", "[profile]", "routes = [", "]"];
    let new_line = prop_oneof![
        key_line,
        select(headers.to_vec()).prop_map(String::from),
        any_text(),
    ];
    // Changes that keep the file TOML come more often, so most cases reach the checks past
    // the TOML parser.
    prop_oneof![
        2 => line().prop_map(Mutation::DeleteLine),
        2 => line().prop_map(Mutation::DuplicateLine),
        1 => (line(), line()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        5 => (line(), toml_value()).prop_map(|(at, v)| Mutation::ReplaceValue(at, v)),
        1 => (line(), prop::collection::vec(toml_piece(), 1..4))
            .prop_map(|(at, p)| Mutation::Insert(at, p.concat())),
        1 => (line(), 1usize..20).prop_map(|(at, n)| Mutation::Remove(at, n)),
        1 => line().prop_map(Mutation::Truncate),
        3 => (line(), new_line).prop_map(|(at, text)| Mutation::AddLine(at, text)),
    ]
}

/// One to three values of the example replaced: the file stays TOML, so the loader's own
/// checks run.
fn value_mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let replace = (any::<usize>(), toml_value()).prop_map(|(at, v)| Mutation::ReplaceValue(at, v));
    prop::collection::vec(replace, 1..4)
}

fn apply(text: &str, mutation: &Mutation) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let count = lines.len().max(1);
    let chars: Vec<char> = text.chars().collect();
    let at_char = |at: usize| at % (chars.len() + 1);
    match mutation {
        Mutation::DeleteLine(at) if !lines.is_empty() => {
            lines.remove(at % count);
        }
        Mutation::DuplicateLine(at) if !lines.is_empty() => {
            let line = lines[at % count].clone();
            lines.insert(at % count, line);
        }
        Mutation::SwapLines(a, b) if !lines.is_empty() => lines.swap(a % count, b % count),
        Mutation::ReplaceValue(at, value) => {
            let starts: Vec<usize> = text.match_indices(" = ").map(|(i, _)| i + 3).collect();
            if let Some(&start) = starts.get(at % starts.len().max(1)) {
                let end = value_end(text, start);
                return format!("{}{value}{}", &text[..start], &text[end..]);
            }
        }
        Mutation::Insert(at, piece) => {
            let at = at_char(*at);
            return chars[..at].iter().collect::<String>()
                + piece
                + &chars[at..].iter().collect::<String>();
        }
        Mutation::Remove(at, n) => {
            let at = at_char(*at);
            let end = (at + n).min(chars.len());
            return chars[..at].iter().chain(&chars[end..]).collect();
        }
        Mutation::Truncate(at) => return chars[..at_char(*at)].iter().collect(),
        Mutation::AddLine(at, line) => lines.insert(at % (lines.len() + 1), line.clone()),
        _ => {}
    }
    lines.join("\n") + "\n"
}

/// Where the value that starts at `start` ends: at the `,`, `}`, `]`, `#` or line end that
/// follows it outside brackets and quotes (escaped quotes are not looked at).
fn value_end(text: &str, start: usize) -> usize {
    let mut depth = 0;
    let mut quoted = false;
    for (i, c) in text[start..].char_indices() {
        match c {
            '"' => quoted = !quoted,
            _ if quoted => {}
            '[' | '{' => depth += 1,
            ']' | '}' if depth > 0 => depth -= 1,
            ',' | '}' | ']' | '#' | '\n' if depth == 0 => return start + i,
            _ => {}
        }
    }
    text.len()
}

/// Shrunk from the example config with a line of three quotes added: a multi-line string
/// never closed is not valid TOML, and the error's offset is the end of the text, after the
/// last newline; the problem is on the file's last line, not the one after it.
#[test]
fn a_toml_error_at_the_end_names_the_last_line() {
    for text in ["a = '''\n", "'''\n"] {
        let error = Config::parse(Path::new("exporter.toml"), text)
            .err()
            .unwrap();
        let lines: Vec<_> = error.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [Some(1)], "{text:?}: {error}");
    }
}

#[test]
fn the_example_config_loads() {
    let loaded = Config::parse(Path::new("exporter.toml"), EXAMPLE);
    assert!(loaded.is_ok(), "{}", loaded.err().unwrap());
}

proptest! {
    #![proptest_config(proptest_config(256))]

    /// Loading any text never panics; it gives a config, or problems each within the file.
    #[test]
    fn any_text_loads_or_lists_problems_within_the_file(text in any_text()) {
        check_load(&text)?;
    }

    /// Loading the example config with one to four TOML-ish changes (lines removed, repeated,
    /// swapped or added, values replaced, text inserted or cut) never panics; it gives a
    /// config, or problems each within the file.
    #[test]
    fn a_broken_example_loads_or_lists_problems_within_the_file(
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let text = mutations.iter().fold(EXAMPLE.to_owned(), |text, m| apply(&text, m));
        check_load(&text)?;
    }
}

proptest! {
    // Fewer cases: most of these configs get as far as building the postback target, whose
    // HTTP client loads the system's root certificates, some 35 ms a load in a debug build.
    #![proptest_config(proptest_config(96))]

    /// Loading the example config with one to three values replaced by others of any type
    /// (still TOML) never panics; it gives a config, or problems each within the file.
    #[test]
    fn an_example_with_other_values_loads_or_lists_problems_within_the_file(
        mutations in value_mutations(),
    ) {
        let text = mutations.iter().fold(EXAMPLE.to_owned(), |text, m| apply(&text, m));
        check_load(&text)?;
    }
}
