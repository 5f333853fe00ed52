//! Property tests of the CSV rendering: whatever the cells hold, a CSV reader reads the file
//! back to the same header and rows.

use csv::ReaderBuilder;
use exporter_core::{Field, Record};
use exporter_csv::{BOM, CsvFormat, render_csv};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::Config;

/// 256 cases a property; no regression files, so a run leaves nothing behind to commit.
fn config() -> Config {
    Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    }
}

/// What a spreadsheet takes for a formula at the start of a cell, as documented.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Cell text rich in what CSV treats specially: quotes, commas, semicolons, tabs, CR, LF,
/// formula starts, a leading `'`, emoji, and any other character.
fn text() -> impl Strategy<Value = String> {
    let special = [
        "\"", "\"\"", ",", ";", "\t", "|", "\r", "\n", "\r\n", " ", "'", "=", "+", "-", "@", "#",
        "\0", "é", "🎉", "\u{feff}",
    ];
    let piece = prop_oneof![
        select(special.to_vec()).prop_map(String::from),
        any::<char>().prop_map(String::from),
        "[a-z0-9]{1,4}",
    ];
    let built = prop::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat());
    prop_oneof![4 => built, 1 => any::<String>()]
}

/// The header and rows of a file: 1 to 5 columns, 1 to 5 rows.
fn table() -> impl Strategy<Value = (Vec<String>, Vec<Vec<String>>)> {
    (1usize..6).prop_flat_map(|columns| {
        let header = prop::collection::vec(text(), columns);
        let row = prop::collection::vec(text(), columns);
        (header, prop::collection::vec(row, 1..6))
    })
}

/// A delimiter the config accepts: one ASCII character other than `"`, CR and LF.
fn delimiter() -> impl Strategy<Value = u8> {
    let common = select(vec![b',', b';', b'\t', b'|', b' ']);
    let any_allowed = (0u8..128).prop_filter("allowed", |b| !matches!(b, b'"' | b'\r' | b'\n'));
    prop_oneof![common, any_allowed]
}

fn records(header: &[String], rows: &[Vec<String>]) -> Vec<Record> {
    let record = |(i, row): (usize, &Vec<String>)| Record {
        delivery_id: format!("d-{i}"),
        order_id: format!("{i}"),
        fields: header
            .iter()
            .zip(row)
            .map(|(name, value)| Field {
                name: name.clone(),
                value: value.clone(),
                secret: false,
            })
            .collect(),
    };
    rows.iter().enumerate().map(record).collect()
}

/// Reads `bytes` with the csv crate's reader, every row as text. Like most readers, it drops a
/// UTF-8 BOM at the start of the file.
fn read_back(bytes: &[u8], delimiter: u8) -> Vec<Vec<String>> {
    let mut reader = ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .from_reader(bytes);
    let rows = reader
        .records()
        .map(|row| row.unwrap().iter().map(String::from).collect());
    rows.collect()
}

/// The header row then the rows, each cell passed through `cell`.
fn expected(
    header: &[String],
    rows: &[Vec<String>],
    cell: impl Fn(&str) -> String,
) -> Vec<Vec<String>> {
    let all = std::iter::once(header).chain(rows.iter().map(Vec::as_slice));
    all.map(|row| row.iter().map(|c| cell(c)).collect())
        .collect()
}

proptest! {
    #![proptest_config(config())]

    /// Any records, with any delimiter, BOM or not, LF or CRLF, read back with a CSV reader to
    /// the header of field names and then each record's values, cell for cell.
    ///
    /// Left out: a file without BOM whose first column name starts with U+FEFF, which readers
    /// take for a BOM (see `a_first_column_name_starting_with_a_bom_reads_back`).
    #[test]
    fn any_records_read_back_to_the_same_cells(
        (header, rows) in table(),
        delimiter in delimiter(),
        bom in any::<bool>(),
        crlf in any::<bool>(),
    ) {
        prop_assume!(bom || !header[0].starts_with('\u{feff}'));
        let format = CsvFormat { delimiter, bom, crlf, formula_guard: false };
        let bytes = render_csv(&records(&header, &rows), &format).unwrap();
        prop_assert_eq!(bytes.starts_with(BOM), bom || header[0].starts_with('\u{feff}'));

        let read = read_back(&bytes, delimiter);
        prop_assert_eq!(read, expected(&header, &rows, str::to_owned));
    }

    /// In Excel mode a cell reads back the same, except that a cell starting with `=`, `+`,
    /// `-`, `@`, tab or CR reads back with a `'` in front; the file starts with the BOM and
    /// its lines end with CRLF.
    #[test]
    fn excel_cells_read_back_the_same_but_the_guard(
        (header, rows) in table(),
        delimiter in delimiter(),
    ) {
        let bytes = render_csv(&records(&header, &rows), &CsvFormat::excel(delimiter)).unwrap();
        prop_assert!(bytes.starts_with(BOM));
        prop_assert!(bytes.ends_with(b"\r\n"));

        let guarded = |cell: &str| {
            if cell.starts_with(FORMULA_STARTS) {
                format!("'{cell}")
            } else {
                cell.to_owned()
            }
        };
        let read = read_back(&bytes, delimiter);
        prop_assert_eq!(read, expected(&header, &rows, guarded));
    }
}

/// The first property's left-out case, shrunk: a file without BOM whose first column is named
/// "\u{feff}" (say a name pasted from a file that had one) starts with the bytes of a BOM, so
/// a reader drops them and reads the header as an empty line: expected rows `[["\u{feff}"],
/// [""]]`, read `[[""]]`. Quoting a first cell that starts with U+FEFF would keep it.
#[test]
fn a_first_column_name_starting_with_a_bom_reads_back() {
    let header = vec!["\u{feff}".to_owned()];
    let rows = vec![vec![String::new()]];
    let bytes = render_csv(&records(&header, &rows), &CsvFormat::default()).unwrap();
    let read = read_back(&bytes, b',');
    assert_eq!(read, expected(&header, &rows, str::to_owned));
}
