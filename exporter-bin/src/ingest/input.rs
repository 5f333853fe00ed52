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
    /// An item of an array or page written on one line.
    LineItem(usize, usize),
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Line(n) => write!(f, "line {n}"),
            Position::Item(n) => write!(f, "item {n}"),
            Position::LineItem(line, n) => write!(f, "line {line} item {n}"),
        }
    }
}

/// Why a whole input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {input}: {error}")]
    Io { input: String, error: io::Error },

    #[error("{input} is not valid JSON: {error}")]
    Json {
        input: String,
        error: serde_json::Error,
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
    let reader = input.open().map_err(|error| InputError::Io {
        input: name.clone(),
        error,
    })?;
    read_from(reader, &name, each)
}

/// Like [`read`], from any reader; `name` names it in messages.
///
/// The format is told from the content: when the first line is a JSON value on its own, the
/// input is JSON lines (a line holding an array or a query page gives its events); otherwise
/// the whole input is one JSON document (a pretty-printed array, page or object). A first line
/// that is broken JSON, followed by lines that parse on their own, is a JSON lines file with a
/// bad first line.
pub fn read_from<E>(
    mut reader: Box<dyn BufRead + '_>,
    name: &str,
    mut each: impl FnMut(Position, Result<Value, String>) -> Result<(), E>,
) -> Result<Result<(), E>, InputError> {
    let io_error = |error| InputError::Io {
        input: name.to_owned(),
        error,
    };
    skip_bom_and_space(&mut reader).map_err(io_error)?;
    if reader.fill_buf().map_err(io_error)?.first() == Some(&b'[') {
        return read_array_or_lines(reader, name, &mut each);
    }
    let mut lines = Lines {
        reader,
        name,
        number: 0,
        document_allowed: true,
    };
    lines.read(&mut each)
}

/// An input that starts with `[`: JSON lines when its first line is JSON on its own, otherwise
/// one array, read element by element so an array of any size streams.
fn read_array_or_lines<E>(
    mut reader: Box<dyn BufRead + '_>,
    name: &str,
    each: &mut impl FnMut(Position, Result<Value, String>) -> Result<(), E>,
) -> Result<Result<(), E>, InputError> {
    let io_error = |error| InputError::Io {
        input: name.to_owned(),
        error,
    };
    let mut first = Vec::new();
    let limit = MAX_LINE_BYTES as u64 + 1;
    reader
        .by_ref()
        .take(limit)
        .read_until(b'\n', &mut first)
        .map_err(io_error)?;
    let whole_line = first.len() <= MAX_LINE_BYTES;
    let lines_file = whole_line && matches!(parse_line(&first), Line::Value(_)) && {
        // One array on one line and nothing after it is an array file, not JSON lines.
        !reader.fill_buf().map_err(io_error)?.trim_ascii().is_empty()
    };
    let rest = std::io::Cursor::new(first).chain(reader);
    if lines_file {
        let mut lines = Lines {
            reader: Box::new(BufReader::new(rest)),
            name,
            number: 0,
            document_allowed: false,
        };
        return lines.read(each);
    }
    stream_array(BufReader::new(rest), name, each)
}

/// Calls `each` for every element of the JSON array `reader` holds, without holding the array.
fn stream_array<E>(
    reader: impl Read,
    name: &str,
    each: &mut impl FnMut(Position, Result<Value, String>) -> Result<(), E>,
) -> Result<Result<(), E>, InputError> {
    let json_error = |error| InputError::Json {
        input: name.to_owned(),
        error,
    };
    let mut stopped = None;
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let elements = Elements {
        each,
        stopped: &mut stopped,
        count: 0,
    };
    let read = serde::Deserializer::deserialize_seq(&mut deserializer, elements);
    // Stopped on purpose: the rest of the array was not read, which is no error.
    if let Some(stop) = stopped {
        return Ok(Err(stop));
    }
    read.map_err(json_error)?;
    deserializer.end().map_err(json_error)?;
    Ok(Ok(()))
}

/// A visitor that hands each element of an array to `each` as it is read.
struct Elements<'a, F, E> {
    each: &'a mut F,
    stopped: &'a mut Option<E>,
    count: usize,
}

impl<'de, F, E> serde::de::Visitor<'de> for Elements<'_, F, E>
where
    F: FnMut(Position, Result<Value, String>) -> Result<(), E>,
{
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of order events")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(value) = seq.next_element::<Value>()? {
            self.count += 1;
            if let Err(stop) = (self.each)(Position::Item(self.count), Ok(value)) {
                *self.stopped = Some(stop);
                return Ok(());
            }
        }
        Ok(())
    }
}

/// Reads an input line by line.
struct Lines<'a, 'r> {
    reader: Box<dyn BufRead + 'r>,
    name: &'a str,
    /// The number of the last line read.
    number: usize,
    /// Whether a first line that does not parse may start a multi-line document.
    document_allowed: bool,
}

impl Lines<'_, '_> {
    fn read<E>(
        &mut self,
        each: &mut impl FnMut(Position, Result<Value, String>) -> Result<(), E>,
    ) -> Result<Result<(), E>, InputError> {
        let name = self.name;
        let io_error = |error| InputError::Io {
            input: name.to_owned(),
            error,
        };
        let mut line = Vec::new();
        loop {
            line.clear();
            let limit = MAX_LINE_BYTES as u64 + 1;
            let read = self
                .reader
                .by_ref()
                .take(limit)
                .read_until(b'\n', &mut line);
            if read.map_err(io_error)? == 0 {
                return Ok(Ok(()));
            }
            self.number += 1;
            let number = self.number;
            let item = match parse_line(&line) {
                Line::Blank => continue,
                Line::TooLong if number == 1 && self.document_allowed => {
                    return self.document_or_lines(line, each);
                }
                Line::TooLong => {
                    self.reader.skip_until(b'\n').map_err(io_error)?;
                    Err(format!("line is longer than {} MiB", MAX_LINE_BYTES >> 20))
                }
                Line::Value(value) if is_page(&value) || value.is_array() => {
                    match each_item(value, name, Some(number), each)? {
                        Ok(()) => continue,
                        Err(e) => return Ok(Err(e)),
                    }
                }
                Line::Value(value) => Ok(value),
                Line::Invalid(_) if number == 1 && self.document_allowed => {
                    return self.document_or_lines(line, each);
                }
                Line::Invalid(reason) => Err(reason),
            };
            if let Err(e) = each(Position::Line(number), item) {
                return Ok(Err(e));
            }
        }
    }

    /// The first line is not JSON on its own: read everything and parse it as one document,
    /// unless the lines after it parse on their own, which makes it JSON lines with a bad first
    /// line.
    fn document_or_lines<E>(
        &mut self,
        first: Vec<u8>,
        each: &mut impl FnMut(Position, Result<Value, String>) -> Result<(), E>,
    ) -> Result<Result<(), E>, InputError> {
        let name = self.name;
        let mut all = first;
        let first_len = all.len();
        self.reader
            .read_to_end(&mut all)
            .map_err(|error| InputError::Io {
                input: name.to_owned(),
                error,
            })?;
        let document = match serde_json::from_slice::<Value>(&all) {
            Ok(value) => return each_item(value, name, None, each),
            Err(error) => error,
        };
        if !later_lines_parse(&all[first_len..]) {
            return Err(InputError::Json {
                input: name.to_owned(),
                error: document,
            });
        }
        let Line::Invalid(reason) = parse_line(&all[..first_len]) else {
            unreachable!("the first line did not parse before")
        };
        if let Err(e) = each(Position::Line(1), Err(reason)) {
            return Ok(Err(e));
        }
        let rest = all.split_off(first_len);
        let mut lines = Lines {
            reader: Box::new(std::io::Cursor::new(rest)),
            name,
            number: 1,
            document_allowed: false,
        };
        lines.read(each)
    }
}

/// One line of a JSON lines input.
enum Line {
    Blank,
    TooLong,
    Value(Value),
    Invalid(String),
}

fn parse_line(line: &[u8]) -> Line {
    if line.len() > MAX_LINE_BYTES && line.last() != Some(&b'\n') {
        return Line::TooLong;
    }
    let text = match std::str::from_utf8(line) {
        Ok(text) => text.trim(),
        Err(error) => {
            return Line::Invalid(format!(
                "not valid UTF-8 (byte {})",
                error.valid_up_to() + 1
            ));
        }
    };
    if text.is_empty() {
        return Line::Blank;
    }
    match serde_json::from_str(text) {
        Ok(value) => Line::Value(value),
        Err(error) => Line::Invalid(format!("invalid JSON: {error}")),
    }
}

/// True when one of the first few non-blank lines of `rest` is JSON on its own.
fn later_lines_parse(rest: &[u8]) -> bool {
    rest.split(|b| *b == b'\n')
        .filter(|line| !line.trim_ascii().is_empty())
        .take(5)
        .any(|line| matches!(parse_line(line), Line::Value(Value::Object(_))))
}

/// Calls `each` for the events of a whole document: an array, a query page, or one object.
fn each_item<E>(
    value: Value,
    name: &str,
    line: Option<usize>,
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
        let position = match line {
            Some(line) => Position::LineItem(line, index + 1),
            None => Position::Item(index + 1),
        };
        if let Err(e) = each(position, Ok(item)) {
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
    fn streams_an_array_on_one_line_longer_than_the_line_limit() {
        let item = format!("{{\"pad\": \"{}\"}}", "x".repeat(1 << 20));
        let array = format!("[{}]", vec![item; 20].join(","));
        let items = read_text(array.as_bytes()).unwrap();
        assert_eq!(items.len(), 20);
        assert!(items.iter().all(|(_, item)| item.is_ok()));
    }

    #[test]
    fn reads_a_query_page_on_one_line_longer_than_the_line_limit() {
        let item = format!("{{\"pad\": \"{}\"}}", "x".repeat(1 << 20));
        let data = vec![item; 20].join(",");
        let page = format!("{{\"result\": \"SUCCESS\", \"message\": {{\"data\": [{data}]}}}}");
        assert_eq!(read_text(page.as_bytes()).unwrap().len(), 20);
    }

    #[test]
    fn reads_a_json_lines_file_whose_first_line_is_an_array() {
        let items = read_text(b"[1, 2]\n{\"a\": 3}\n").unwrap();
        let positions: Vec<String> = items.iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(positions, ["line 1 item 1", "line 1 item 2", "line 2"]);
    }

    #[test]
    fn reads_a_pretty_printed_json_array() {
        let items = read_text(b"[\n  {\"a\": 1},\n  {\"a\": 2}\n]\n").unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].0, Position::Item(2));
    }

    #[test]
    fn reads_a_json_lines_file_whose_first_line_is_broken() {
        let items = read_text(b"{\"a\": \n{\"a\": 2}\n").unwrap();
        let positions: Vec<_> = items
            .iter()
            .map(|(p, r)| (p.to_string(), r.is_ok()))
            .collect();
        assert_eq!(
            positions,
            [("line 1".to_owned(), false), ("line 2".to_owned(), true)]
        );
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
