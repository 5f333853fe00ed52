//! Reading order events from files and stdin: JSON lines, a JSON array, or a page of the CRM's
//! order query API (`{"result":"SUCCESS","message":{"data":[...]}}`).
//!
//! JSON lines are read one line at a time, so a file of any size streams; a bad line is reported
//! with its number and skipped. An array or a page is one JSON document and is read whole.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;

use serde_json::Value;

/// The longest line accepted in a JSON lines input.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Where events are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Stdin,
    File(PathBuf),
}

impl Input {
    /// `-` means stdin.
    pub fn parse(arg: &str) -> Input {
        if arg == "-" {
            Input::Stdin
        } else {
            Input::File(PathBuf::from(arg))
        }
    }

    /// The name used in messages.
    pub fn name(&self) -> String {
        match self {
            Input::Stdin => "stdin".to_owned(),
            Input::File(path) => path.display().to_string(),
        }
    }

    fn open(&self) -> io::Result<Box<dyn BufRead>> {
        Ok(match self {
            Input::Stdin => Box::new(BufReader::new(io::stdin())),
            Input::File(path) => Box::new(BufReader::with_capacity(1 << 16, File::open(path)?)),
        })
    }
}

/// Where in an input an item was found: `line 17` or `item 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    Line(usize),
    Item(usize),
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Line(n) => write!(f, "line {n}"),
            Position::Item(n) => write!(f, "item {n}"),
        }
    }
}

/// Why a whole input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {input}: {source}")]
    Io { input: String, source: io::Error },

    #[error("{input} is not valid JSON: {source}")]
    Json {
        input: String,
        source: serde_json::Error,
    },

    #[error("{input}: {message}")]
    Shape { input: String, message: String },
}

/// Reads every item of `input`, calling `each` with its position and either the JSON value or
/// why that item is unreadable. Stops early when `each` returns an error.
pub fn read<E>(
    input: &Input,
    each: impl FnMut(Position, Result<Value, String>) -> Result<(), E>,
) -> Result<Result<(), E>, InputError> {
    let name = input.name();
    let reader = input.open().map_err(|source| InputError::Io {
        input: name.clone(),
        source,
    })?;
    read_from(reader, &name, each)
}

/// Like [`read`], from any reader; `name` names it in messages.
pub fn read_from<E>(
    mut reader: Box<dyn BufRead + '_>,
    name: &str,
    mut each: impl FnMut(Position, Result<Value, String>) -> Result<(), E>,
) -> Result<Result<(), E>, InputError> {
    let name = name.to_owned();
    let io_error = |source| InputError::Io {
        input: name.clone(),
        source,
    };
    skip_bom_and_space(&mut reader).map_err(io_error)?;
    let first = reader.fill_buf().map_err(io_error)?.first().copied();
    match first {
        None => Ok(Ok(())),
        Some(b'[') => {
            let value = read_document(&mut reader, &name)?;
            Ok(each_item(value, &name, &mut each)?)
        }
        Some(_) => read_lines(&mut reader, &name, &mut each),
    }
}

fn read_lines<E>(
    reader: &mut Box<dyn BufRead + '_>,
    name: &str,
    each: &mut impl FnMut(Position, Result<Value, String>) -> Result<(), E>,
) -> Result<Result<(), E>, InputError> {
    let io_error = |source| InputError::Io {
        input: name.to_owned(),
        source,
    };
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        let read = reader
            .by_ref()
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line);
        if read.map_err(io_error)? == 0 {
            return Ok(Ok(()));
        }
        number += 1;
        if line.len() > MAX_LINE_BYTES && line.last() != Some(&b'\n') {
            reader.skip_until(b'\n').map_err(io_error)?;
            let message = format!("line is longer than {} MiB", MAX_LINE_BYTES >> 20);
            if let Err(e) = each(Position::Line(number), Err(message)) {
                return Ok(Err(e));
            }
            continue;
        }
        let text = match std::str::from_utf8(&line) {
            Ok(text) => text.trim(),
            Err(error) => {
                let message = format!("not valid UTF-8 (byte {})", error.valid_up_to() + 1);
                if let Err(e) = each(Position::Line(number), Err(message)) {
                    return Ok(Err(e));
                }
                continue;
            }
        };
        if text.is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(text) {
            Ok(value) if is_page(&value) => {
                if let Err(e) = each_item(value, name, each)? {
                    return Ok(Err(e));
                }
            }
            Ok(value) => {
                if let Err(e) = each(Position::Line(number), Ok(value)) {
                    return Ok(Err(e));
                }
            }
            Err(_) if number == 1 => {
                // Not one object per line: a pretty-printed object or query page.
                let mut rest = line.clone();
                reader.read_to_end(&mut rest).map_err(io_error)?;
                let value = parse_document(&rest, name)?;
                return each_item(value, name, each);
            }
            Err(error) => {
                let message = format!("invalid JSON: {error}");
                if let Err(e) = each(Position::Line(number), Err(message)) {
                    return Ok(Err(e));
                }
            }
        }
    }
}

/// Calls `each` for the events of a whole document: an array, a query page, or one object.
fn each_item<E>(
    value: Value,
    name: &str,
    each: &mut impl FnMut(Position, Result<Value, String>) -> Result<(), E>,
) -> Result<Result<(), E>, InputError> {
    let items = match value {
        Value::Array(items) => items,
        Value::Object(mut page) if is_page_object(&page) => page_data(&mut page, name)?,
        object @ Value::Object(_) => vec![object],
        other => {
            let message = format!(
                "expected an order object, an array or a query page, found {}",
                exporter_core::event::kind_of(&other)
            );
            return Err(InputError::Shape {
                input: name.to_owned(),
                message,
            });
        }
    };
    for (index, item) in items.into_iter().enumerate() {
        if let Err(e) = each(Position::Item(index + 1), Ok(item)) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(()))
}

fn is_page_object(page: &serde_json::Map<String, Value>) -> bool {
    page.contains_key("result") && page.contains_key("message") && !page.contains_key("orderId")
}

fn is_page(value: &Value) -> bool {
    value.as_object().is_some_and(is_page_object)
}

fn page_data(
    page: &mut serde_json::Map<String, Value>,
    name: &str,
) -> Result<Vec<Value>, InputError> {
    let shape = |message: String| InputError::Shape {
        input: name.to_owned(),
        message,
    };
    let result = page
        .get("result")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !result.eq_ignore_ascii_case("success") {
        let detail = page
            .get("message")
            .map(|m| m.to_string())
            .unwrap_or_default();
        return Err(shape(format!(
            "the CRM answered result `{result}`: {detail:.200}"
        )));
    }
    match page
        .get_mut("message")
        .and_then(|m| m.get_mut("data"))
        .map(Value::take)
    {
        Some(Value::Array(items)) => Ok(items),
        _ => Err(shape("query page has no `message.data` array".to_owned())),
    }
}

fn read_document(reader: &mut Box<dyn BufRead + '_>, name: &str) -> Result<Value, InputError> {
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|source| InputError::Io {
            input: name.to_owned(),
            source,
        })?;
    parse_document(&bytes, name)
}

fn parse_document(bytes: &[u8], name: &str) -> Result<Value, InputError> {
    serde_json::from_slice(bytes).map_err(|source| InputError::Json {
        input: name.to_owned(),
        source,
    })
}

fn skip_bom_and_space(reader: &mut Box<dyn BufRead + '_>) -> io::Result<()> {
    let buf = reader.fill_buf()?;
    if buf.starts_with(b"\xEF\xBB\xBF") {
        reader.consume(3);
    }
    loop {
        let buf = reader.fill_buf()?;
        let blank = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
        if blank == 0 {
            return Ok(());
        }
        reader.consume(blank);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    type Items = Vec<(Position, Result<Value, String>)>;

    fn read_text(text: &[u8]) -> Result<Items, InputError> {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text).unwrap();
        let input = Input::File(file.path().to_owned());
        let mut items = Vec::new();
        read::<()>(&input, |position, item| {
            items.push((position, item));
            Ok(())
        })?
        .unwrap();
        Ok(items)
    }

    #[test]
    fn reads_json_lines_and_reports_bad_lines_by_number() {
        let items = read_text(b"{\"a\":1}\n\n{bad\n\xff\xfe\n{\"a\":2}\n").unwrap();
        let positions: Vec<_> = items
            .iter()
            .map(|(p, r)| (p.to_string(), r.is_ok()))
            .collect();
        let expected = [
            ("line 1", true),
            ("line 3", false),
            ("line 4", false),
            ("line 5", true),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(p, ok)| (p.to_string(), *ok))
            .collect();
        assert_eq!(positions, expected);
        assert!(items[2].1.as_ref().unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn reads_a_json_array() {
        let items = read_text(b"  [ {\"a\": 1}, {\"a\": 2} ]").unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].0, Position::Item(2));
    }

    #[test]
    fn reads_a_pretty_printed_query_page() {
        let page = b"{\n \"result\": \"SUCCESS\",\n \"message\": {\"data\": [{\"a\": 1}]}\n}\n";
        let items = read_text(page).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].1.as_ref().unwrap()["a"], 1);
    }

    #[test]
    fn refuses_an_error_page() {
        let page = br#"{"result": "ERROR", "message": "Invalid login"}"#;
        let error = read_text(page).unwrap_err().to_string();
        assert!(error.contains("result `ERROR`"), "{error}");
    }

    #[test]
    fn reports_a_broken_array_with_its_position() {
        let error = read_text(b"[{\"a\": 1},\n {\"a\": ]")
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 2"), "{error}");
    }

    #[test]
    fn reads_a_single_pretty_printed_order() {
        let items = read_text(b"{\n  \"orderId\": \"A\"\n}\n").unwrap();
        assert_eq!(items.len(), 1);
    }
}
