//! Rendering a batch of records as CSV bytes, and the file name template. Both are pure, so a
//! target that ships files elsewhere (an FTP folder) produces exactly the same files.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use csv::{Terminator, WriterBuilder};
use exporter_core::{Field, Record};
use jiff::Timestamp;

use crate::error::CsvError;

/// The UTF-8 byte order mark, which Excel needs to read a CSV file as UTF-8.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// First characters that make a spreadsheet treat a cell as a formula.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// How a CSV file is laid out. The default is RFC 4180 with `,` and LF line ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvFormat {
    /// The byte between cells: an ASCII character other than `"`, CR and LF.
    pub delimiter: u8,
    /// Starts the file with the UTF-8 byte order mark.
    pub bom: bool,
    /// Ends lines with CRLF instead of LF.
    pub crlf: bool,
    /// Prefixes `'` to every cell starting with `=`, `+`, `-`, `@`, tab or CR, so a
    /// spreadsheet shows it as text instead of running it. Negative numbers become text too.
    pub formula_guard: bool,
}

impl CsvFormat {
    /// What Excel opens safely: BOM, CRLF line ends and the formula guard.
    pub fn excel(delimiter: u8) -> Self {
        CsvFormat {
            delimiter,
            bom: true,
            crlf: true,
            formula_guard: true,
        }
    }
}

impl Default for CsvFormat {
    fn default() -> Self {
        CsvFormat {
            delimiter: b',',
            bom: false,
            crlf: false,
            formula_guard: false,
        }
    }
}

/// Renders records as one CSV file: a header row of the first record's field names, then one
/// row per record, columns in field order, cells quoted only when needed.
///
/// Secret fields are written with their real value: putting it in the file is the point of
/// mapping it. No records make an empty file body (no header, no BOM).
///
/// Fails when a record's field names differ from the first record's.
pub fn render_csv(records: &[Record], format: &CsvFormat) -> Result<Vec<u8>, CsvError> {
    render(records, format, |field| &field.value)
}

/// Like [`render_csv`], but secret fields show as `***`: what a preview or log may show.
pub fn render_csv_masked(records: &[Record], format: &CsvFormat) -> Result<Vec<u8>, CsvError> {
    render(records, format, Field::shown)
}

fn render(
    records: &[Record],
    format: &CsvFormat,
    value: impl Fn(&Field) -> &str,
) -> Result<Vec<u8>, CsvError> {
    let Some(first) = records.first() else {
        return Ok(Vec::new());
    };
    check_columns(first, records)?;

    let mut out = Vec::new();
    // A first column name that starts with U+FEFF would read as a byte order mark and vanish;
    // after a real one, readers strip that and keep the name whole.
    let name_looks_like_bom = first
        .fields
        .first()
        .is_some_and(|f| f.name.starts_with('\u{feff}'));
    if format.bom || name_looks_like_bom {
        out.extend_from_slice(BOM);
    }
    let terminator = if format.crlf {
        Terminator::CRLF
    } else {
        Terminator::Any(b'\n')
    };
    let mut writer = WriterBuilder::new()
        .delimiter(format.delimiter)
        .terminator(terminator)
        .from_writer(out);

    let header = first.fields.iter().map(|f| guard(&f.name, format));
    write_row(&mut writer, header);
    for record in records {
        let row = record.fields.iter().map(|f| guard(value(f), format));
        write_row(&mut writer, row);
    }
    Ok(writer
        .into_inner()
        .expect("flushing CSV into memory cannot fail"))
}

/// Writes one row. Rows were checked to have the same length and the sink is memory, so the
/// csv writer has no reason left to fail.
fn write_row<'a>(writer: &mut csv::Writer<Vec<u8>>, row: impl Iterator<Item = Cow<'a, str>>) {
    let row: Vec<Cow<'a, str>> = row.collect();
    writer
        .write_record(row.iter().map(|cell| cell.as_bytes()))
        .expect("writing CSV rows of equal length into memory cannot fail");
}

fn guard<'a>(cell: &'a str, format: &CsvFormat) -> Cow<'a, str> {
    if format.formula_guard && cell.starts_with(FORMULA_STARTS) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// Every record must have the first record's field names, in the same order.
fn check_columns(first: &Record, records: &[Record]) -> Result<(), CsvError> {
    let expected = names(first);
    match records.iter().find(|r| names(r) != expected) {
        None => Ok(()),
        Some(record) => Err(CsvError::ColumnsDiffer {
            delivery_id: record.delivery_id.clone(),
            expected,
            found: names(record),
        }),
    }
}

fn names(record: &Record) -> Vec<String> {
    record.fields.iter().map(|f| f.name.clone()).collect()
}

/// A file name with placeholders, checked when parsed so it can only name a file inside the
/// target's folder:
///
/// - `{profile}`: the profile name made file safe (see [`file_safe`]);
/// - `{timestamp}`: the flush time in UTC, `20261204T153000Z`;
/// - `{date}`: the flush date in UTC, `20261204`;
/// - `{seq}`: 8 digits derived from the batch, the same when a batch is retried.
#[derive(Clone, PartialEq, Eq)]
pub struct FileNameTemplate {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Profile,
    Timestamp,
    Date,
    Seq,
}

impl FileNameTemplate {
    /// The template used when a profile sets none.
    pub const DEFAULT: &'static str = "{profile}_{timestamp}_{seq}.csv";

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the template holds `{seq}`.
    pub fn has_seq(&self) -> bool {
        self.parts.contains(&Part::Seq)
    }

    /// The file name for a profile's flush at `at` with counter `seq`.
    pub fn render(&self, profile: &str, at: Timestamp, seq: u64) -> String {
        let mut name = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => name.push_str(text),
                Part::Profile => name.push_str(&file_safe(profile)),
                Part::Timestamp => name.push_str(&at.strftime("%Y%m%dT%H%M%SZ").to_string()),
                Part::Date => name.push_str(&at.strftime("%Y%m%d").to_string()),
                Part::Seq => name.push_str(&format!("{seq:04}")),
            }
        }
        name
    }

    /// The names to try in turn for one flush, each with the counter it used: the rendered
    /// name first, then, while a name is taken, the next `{seq}` or, for a template without
    /// `{seq}`, the name with `-2`, `-3`... before its extension.
    pub fn candidates<'a>(
        &'a self,
        profile: &'a str,
        at: Timestamp,
        seq: u64,
    ) -> impl Iterator<Item = (u64, String)> + 'a {
        (0..).map(move |attempt| {
            if self.has_seq() {
                let seq = seq + attempt;
                (seq, self.render(profile, at, seq))
            } else if attempt == 0 {
                (seq, self.render(profile, at, seq))
            } else {
                (
                    seq,
                    with_suffix(&self.render(profile, at, seq), attempt + 1),
                )
            }
        })
    }
}

impl Default for FileNameTemplate {
    fn default() -> Self {
        FileNameTemplate::DEFAULT
            .parse()
            .expect("the default file name template is valid")
    }
}

impl fmt::Debug for FileNameTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileNameTemplate({:?})", self.source)
    }
}

impl fmt::Display for FileNameTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for FileNameTemplate {
    type Err = CsvError;

    fn from_str(source: &str) -> Result<Self, CsvError> {
        check_safe(source)?;
        let parts = parse_parts(source)?;
        Ok(FileNameTemplate {
            source: source.to_owned(),
            parts,
        })
    }
}

fn check_safe(source: &str) -> Result<(), CsvError> {
    let problem = if source.is_empty() {
        return Err(CsvError::EmptyTemplate);
    } else if source.contains(['/', '\\']) {
        "contains a path separator (`/` or `\\`)"
    } else if source.contains("..") {
        "contains `..`"
    } else if source.contains(char::is_control) {
        "contains a control character"
    } else {
        return Ok(());
    };
    Err(CsvError::UnsafeFileName {
        template: source.to_owned(),
        problem,
    })
}

fn parse_parts(source: &str) -> Result<Vec<Part>, CsvError> {
    let unmatched = |brace, column| CsvError::UnmatchedBrace {
        template: source.to_owned(),
        brace,
        column,
    };
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut chars = source.chars().enumerate();
    while let Some((index, c)) = chars.next() {
        match c {
            '{' => {
                let mut name = String::new();
                let mut closed = false;
                for (_, c) in chars.by_ref() {
                    closed = c == '}';
                    if closed {
                        break;
                    }
                    name.push(c);
                }
                if !closed {
                    return Err(unmatched('{', index + 1));
                }
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(placeholder(source, name)?);
            }
            '}' => return Err(unmatched('}', index + 1)),
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(parts)
}

fn placeholder(source: &str, name: String) -> Result<Part, CsvError> {
    match name.as_str() {
        "profile" => Ok(Part::Profile),
        "timestamp" => Ok(Part::Timestamp),
        "date" => Ok(Part::Date),
        "seq" => Ok(Part::Seq),
        _ => Err(CsvError::UnknownPlaceholder {
            template: source.to_owned(),
            name,
        }),
    }
}

/// `orders.csv` with suffix 2 is `orders-2.csv`; a name without extension gets it at the end.
fn with_suffix(name: &str, suffix: u64) -> String {
    match name.rfind('.') {
        Some(dot) if dot > 0 => format!("{}-{suffix}{}", &name[..dot], &name[dot..]),
        _ => format!("{name}-{suffix}"),
    }
}

/// A profile name as it may appear in a file name: ASCII letters, digits, `-`, `_` and `.`
/// are kept, every other character becomes `_`.
pub fn file_safe(profile: &str) -> String {
    profile
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, fields: &[(&str, &str)]) -> Record {
        let fields = fields
            .iter()
            .map(|(name, value)| Field {
                name: (*name).into(),
                value: (*value).into(),
                secret: false,
            })
            .collect();
        Record {
            delivery_id: id.into(),
            order_id: format!("order-{id}"),
            fields,
        }
    }

    fn text(records: &[Record], format: &CsvFormat) -> String {
        String::from_utf8(render_csv(records, format).unwrap()).unwrap()
    }

    fn at() -> Timestamp {
        "2026-12-04T15:30:00Z".parse().unwrap()
    }

    #[test]
    fn writes_header_then_one_row_per_record_with_lf() {
        let records = [
            record("1", &[("first", "Ann"), ("last", "Lee")]),
            record("2", &[("first", "Bo"), ("last", "Kim")]),
        ];
        assert_eq!(
            text(&records, &CsvFormat::default()),
            "first,last\nAnn,Lee\nBo,Kim\n"
        );
    }

    #[test]
    fn quotes_cells_with_commas_quotes_and_newlines() {
        let records = [record(
            "1",
            &[("a", "x,y"), ("b", "say \"hi\""), ("c", "l1\nl2\r\nl3")],
        )];
        let expected = "a,b,c\n\"x,y\",\"say \"\"hi\"\"\",\"l1\nl2\r\nl3\"\n";
        assert_eq!(text(&records, &CsvFormat::default()), expected);
    }

    #[test]
    fn keeps_non_ascii_and_emoji_as_utf8() {
        let records = [record(
            "1",
            &[("name", "Zoë Ørsted"), ("note", "ok 👍🏽"), ("city", "東京")],
        )];
        assert_eq!(
            text(&records, &CsvFormat::default()),
            "name,note,city\nZoë Ørsted,ok 👍🏽,東京\n"
        );
    }

    #[test]
    fn leaves_empty_cells_empty() {
        let records = [record("1", &[("a", ""), ("b", "x")])];
        assert_eq!(text(&records, &CsvFormat::default()), "a,b\n,x\n");
    }

    #[test]
    fn uses_the_configured_delimiter_and_quotes_cells_holding_it() {
        let format = CsvFormat {
            delimiter: b';',
            ..CsvFormat::default()
        };
        let records = [record("1", &[("a", "x;y"), ("b", "1,5")])];
        assert_eq!(text(&records, &format), "a;b\n\"x;y\";1,5\n");
    }

    #[test]
    fn starts_with_a_bom_when_asked() {
        let format = CsvFormat {
            bom: true,
            ..CsvFormat::default()
        };
        let bytes = render_csv(&[record("1", &[("a", "1")])], &format).unwrap();
        assert_eq!(bytes, b"\xEF\xBB\xBFa\n1\n");
    }

    #[test]
    fn excel_mode_writes_bom_and_crlf() {
        let bytes = render_csv(
            &[record("1", &[("a", "1"), ("b", "2")])],
            &CsvFormat::excel(b','),
        );
        assert_eq!(bytes.unwrap(), b"\xEF\xBB\xBFa,b\r\n1,2\r\n");
    }

    #[test]
    fn excel_mode_guards_cells_that_look_like_formulas() {
        let cells = [
            ("a", "=1+2"),
            ("b", "+1"),
            ("c", "-3"),
            ("d", "@SUM(A1)"),
            ("e", "\tx"),
        ];
        let mut fields = cells.to_vec();
        fields.extend([("f", "\rx"), ("g", "a=b"), ("h", "=x,y")]);
        let format = CsvFormat {
            bom: false,
            ..CsvFormat::excel(b',')
        };
        let rendered = text(&[record("1", &fields)], &format);
        let row = rendered.split("\r\n").nth(1).unwrap();
        assert_eq!(row, "'=1+2,'+1,'-3,'@SUM(A1),'\tx,\"'\rx\",a=b,\"'=x,y\"");
    }

    #[test]
    fn does_not_guard_formulas_outside_excel_mode() {
        let records = [record("1", &[("a", "=1+2")])];
        assert_eq!(text(&records, &CsvFormat::default()), "a\n=1+2\n");
    }

    #[test]
    fn treats_header_prefixed_names_as_plain_columns() {
        let records = [record("1", &[("header:Content-Type", "x"), ("b", "y")])];
        assert_eq!(
            text(&records, &CsvFormat::default()),
            "header:Content-Type,b\nx,y\n"
        );
    }

    #[test]
    fn writes_secrets_in_the_file_and_masks_them_in_the_masked_rendering() {
        let mut records = [record("1", &[("user", "ann"), ("token", "s3cr3t-value")])];
        records[0].fields[1].secret = true;
        assert_eq!(
            text(&records, &CsvFormat::default()),
            "user,token\nann,s3cr3t-value\n"
        );
        let masked = render_csv_masked(&records, &CsvFormat::default()).unwrap();
        assert_eq!(masked, b"user,token\nann,***\n");
    }

    #[test]
    fn renders_nothing_for_no_records() {
        let format = CsvFormat::excel(b',');
        assert_eq!(render_csv(&[], &format).unwrap(), b"");
    }

    #[test]
    fn refuses_records_whose_fields_differ_from_the_first() {
        let records = [
            record("1", &[("a", "1"), ("b", "2")]),
            record("2", &[("b", "2"), ("a", "1")]),
        ];
        let error = render_csv(&records, &CsvFormat::default()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "delivery 2 has fields [b, a] but the file's columns are [a, b]"
        );
    }

    #[test]
    fn default_template_renders_profile_timestamp_and_seq() {
        let name = FileNameTemplate::default().render("Partials US", at(), 1);
        assert_eq!(name, "Partials_US_20261204T153000Z_0001.csv");
    }

    #[test]
    fn template_renders_date_and_literal_text() {
        let template: FileNameTemplate = "orders-{date}-{seq}.txt".parse().unwrap();
        assert_eq!(
            template.render("p", at(), 12345),
            "orders-20261204-12345.txt"
        );
    }

    #[test]
    fn makes_profile_names_file_safe() {
        assert_eq!(file_safe("Acme/Sales: new.v2 ✓"), "Acme_Sales__new.v2__");
        assert_eq!(file_safe("a-b_c.d"), "a-b_c.d");
    }

    #[test]
    fn candidates_bump_seq_when_the_template_has_one() {
        let template = FileNameTemplate::default();
        let names: Vec<_> = template.candidates("p", at(), 3).take(2).collect();
        assert_eq!(names[0], (3, "p_20261204T153000Z_0003.csv".to_owned()));
        assert_eq!(names[1], (4, "p_20261204T153000Z_0004.csv".to_owned()));
    }

    #[test]
    fn candidates_add_a_suffix_when_the_template_has_no_seq() {
        let template: FileNameTemplate = "{profile}.csv".parse().unwrap();
        let names: Vec<_> = template
            .candidates("p", at(), 1)
            .map(|(_, n)| n)
            .take(3)
            .collect();
        assert_eq!(names, ["p.csv", "p-2.csv", "p-3.csv"]);
        let bare: FileNameTemplate = "orders".parse().unwrap();
        assert_eq!(bare.candidates("p", at(), 1).nth(1).unwrap().1, "orders-2");
    }

    #[test]
    fn rejects_unknown_placeholders() {
        let error = "{profile}_{time}.csv"
            .parse::<FileNameTemplate>()
            .unwrap_err();
        assert!(matches!(&error, CsvError::UnknownPlaceholder { name, .. } if name == "time"));
        assert!(
            error
                .to_string()
                .contains("{profile}, {timestamp}, {date} or {seq}"),
            "{error}"
        );
    }

    #[test]
    fn rejects_unmatched_braces() {
        let error = "{profile_{seq}.csv"
            .parse::<FileNameTemplate>()
            .unwrap_err();
        assert!(
            matches!(error, CsvError::UnknownPlaceholder { .. }),
            "{error}"
        );
        let error = "a_{seq".parse::<FileNameTemplate>().unwrap_err();
        assert!(
            matches!(
                error,
                CsvError::UnmatchedBrace {
                    brace: '{',
                    column: 3,
                    ..
                }
            ),
            "{error}"
        );
        let error = "a}.csv".parse::<FileNameTemplate>().unwrap_err();
        assert!(
            matches!(
                error,
                CsvError::UnmatchedBrace {
                    brace: '}',
                    column: 2,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn rejects_names_that_leave_the_folder() {
        for template in [
            "sub/{seq}.csv",
            "sub\\{seq}.csv",
            "..{seq}.csv",
            "a\0.csv",
            "",
        ] {
            let result = template.parse::<FileNameTemplate>();
            assert!(result.is_err(), "{template:?} was accepted");
        }
    }
}
