//! Plain-text tables for the terminal: text columns left-aligned, numbers right-aligned.

/// Formats rows (the first is the header) with each column as wide as its widest cell.
/// Columns whose header is in `numeric` are right-aligned.
pub fn render(rows: &[Vec<String>], numeric: &[&str]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let mut widths = vec![0; columns];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let right: Vec<bool> = rows
        .first()
        .map(|header| {
            header
                .iter()
                .map(|h| numeric.contains(&h.as_str()))
                .collect()
        })
        .unwrap_or_default();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (column, (cell, width)) in row.iter().zip(&widths).enumerate() {
            let pad = width.saturating_sub(cell.chars().count());
            if right.get(column).copied().unwrap_or(false) {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            }
            line.push_str("  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn aligns_text_left_and_numbers_right() {
        let rows = vec![
            vec!["profile".to_owned(), "count".to_owned()],
            vec!["Sales".to_owned(), "7".to_owned()],
            vec!["Café refunds".to_owned(), "1234".to_owned()],
        ];
        let text = render(&rows, &["count"]);
        assert_eq!(
            text,
            "profile       count\nSales             7\nCafé refunds   1234\n"
        );
    }
}
