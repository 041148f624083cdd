//! Labelled text examples: parsing TSV/CSV/JSONL bytes, label sets, and seeded,
//! stratified splits.
//!
//! Everything works on in-memory bytes so the same code serves the CLI and the
//! browser (wasm), where there is no filesystem.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::quote::excerpt;
use crate::rng::Rng;

/// One labelled sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    pub text: String,
    pub label: usize,
}

/// Supported data-file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `sentence<TAB>label` with a header line, as in the GLUE SST-2 files.
    Tsv,
    /// RFC-4180 CSV with `sentence`/`text` and `label` columns.
    Csv,
    /// One JSON object per line with `text`/`sentence` and `label`.
    Jsonl,
}

impl Format {
    /// Guesses the format from a file name's extension (case-insensitive), so
    /// callers need not ask users for it.
    pub fn from_path_name(name: &str) -> Option<Format> {
        let lower = name.to_ascii_lowercase();
        match lower.rsplit_once('.')?.1 {
            "tsv" => Some(Format::Tsv),
            "csv" => Some(Format::Csv),
            "jsonl" | "json-lines" => Some(Format::Jsonl),
            _ => None,
        }
    }
}

/// Why a data or label file could not be used. `origin` is the display name the
/// caller passed (usually the file name) so messages point at the right input;
/// `line` is 1-based.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{origin}: line {line}: not valid UTF-8")]
    NotUtf8 { origin: String, line: usize },
    #[error("{origin}: no data rows")]
    Empty { origin: String },
    #[error("{origin}: missing header line (expected {expected}); the first line looks like data: {found:?}")]
    MissingHeader { origin: String, found: String, expected: &'static str },
    #[error("{origin}: unrecognised header {found:?} (expected {expected})")]
    BadHeader { origin: String, found: String, expected: &'static str },
    #[error("{origin}: line {line}: {reason}")]
    BadRow { origin: String, line: usize, reason: String },
    #[error("{origin}: line {line}: label {value:?} is not a non-negative integer")]
    BadLabel { origin: String, line: usize, value: String },
    #[error("{origin}: line {line}: label {label} is past the {max} classes bdaudit supports", max = MAX_CLASSES)]
    LabelTooLarge { origin: String, line: usize, label: usize },
    #[error("{origin}: line {line}: empty text")]
    EmptyText { origin: String, line: usize },
    #[error("{origin}: label {label} must be below {num_labels} (the number of labels)")]
    LabelOutOfRange { origin: String, label: usize, num_labels: usize },
    #[error("{origin}: every example has label {label}; a classifier needs at least two classes")]
    SingleClass { origin: String, label: usize },
    #[error("{origin}: line {line}: invalid JSON: {message}")]
    Json { origin: String, line: usize, message: String },
}

/// Most classes a classifier may have: far above real tasks, low enough to refuse a wrapped
/// negative count (4294967295 from JavaScript) or a stray huge label before anything sized by
/// the number of classes is allocated. Confusion matrices grow with its square, and the scan
/// keeps two per candidate trigger: 8 MB each at 1,000 classes, 800 MB at 10,000 (enough for
/// a crafted checkpoint to run a scan out of memory).
pub const MAX_CLASSES: usize = 1_000;

const TSV_HEADER: &str = "a header line \"sentence<TAB>label\"";
const CSV_HEADER: &str = "a header with a \"sentence\" or \"text\" column and a \"label\" column";
const LABELS_HEADER: &str = "a header line \"label<TAB>name<TAB>description\"";

/// Parses a data file held in memory. Blank lines are skipped, text is trimmed,
/// a leading UTF-8 BOM and CRLF or CR-only line ends are accepted.
pub fn parse(bytes: &[u8], format: Format, source: &str) -> Result<Vec<Example>, DataError> {
    let text = decode(bytes, source)?;
    let examples = match format {
        Format::Tsv => parse_tsv(&text, source)?,
        Format::Csv => parse_csv(&text, source)?,
        Format::Jsonl => parse_jsonl(&text, source)?,
    };
    if examples.is_empty() {
        return Err(DataError::Empty { origin: source.to_owned() });
    }
    Ok(examples)
}

/// Serialises examples as `sentence<TAB>label` TSV (the format `parse` reads
/// back). Tabs and line breaks cannot be represented in this format, so each run
/// of them becomes a single space and the text is trimmed.
pub fn write_tsv(examples: &[Example]) -> Result<Vec<u8>, DataError> {
    let mut out = String::from("sentence\tlabel\n");
    for (i, example) in examples.iter().enumerate() {
        let text = flatten_line(&example.text);
        if text.is_empty() {
            return Err(DataError::EmptyText { origin: "TSV output".to_owned(), line: i + 2 });
        }
        out.push_str(&text);
        out.push('\t');
        out.push_str(&example.label.to_string());
        out.push('\n');
    }
    Ok(out.into_bytes())
}

/// Checks every label is `< num_labels`, so a data set cannot index past the
/// classifier's output layer.
pub fn check_labels(examples: &[Example], num_labels: usize, source: &str) -> Result<(), DataError> {
    match examples.iter().find(|e| e.label >= num_labels) {
        Some(e) => Err(DataError::LabelOutOfRange { origin: source.to_owned(), label: e.label, num_labels }),
        None => Ok(()),
    }
}

/// Number of examples per label; index = label, length = largest label + 1
/// (empty for no examples).
pub fn label_counts(examples: &[Example]) -> Vec<usize> {
    let len = examples.iter().map(|e| e.label + 1).max().unwrap_or(0);
    let mut counts = vec![0; len];
    for e in examples {
        counts[e.label] += 1;
    }
    counts
}

/// Rejects data sets with fewer than two distinct labels: training on them
/// cannot produce a meaningful classifier.
pub fn require_two_classes(examples: &[Example], source: &str) -> Result<(), DataError> {
    let Some(first) = examples.first() else {
        return Err(DataError::Empty { origin: source.to_owned() });
    };
    if examples.iter().all(|e| e.label == first.label) {
        return Err(DataError::SingleClass { origin: source.to_owned(), label: first.label });
    }
    Ok(())
}

/// Human-readable class names, indexed by label id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelSet {
    pub names: Vec<String>,
}

impl LabelSet {
    /// Parses a `label<TAB>name<TAB>description` file (description optional).
    /// Rows may come in any order but ids must be exactly `0..n`, so that every
    /// classifier output has a name.
    pub fn parse_tsv(bytes: &[u8], source: &str) -> Result<LabelSet, DataError> {
        let text = decode(bytes, source)?;
        let mut lines = non_blank_lines(&text);
        let Some((_, header)) = lines.next() else {
            return Err(DataError::Empty { origin: source.to_owned() });
        };
        let cols = lower_fields(header.split('\t'));
        if cols.len() < 2 || cols[0] != "label" || cols[1] != "name" {
            return Err(header_error(header, cols.first().is_some_and(|c| c.parse::<usize>().is_ok()), LABELS_HEADER, source));
        }
        let mut by_id = BTreeMap::new();
        for (line, row) in lines {
            let mut fields = row.splitn(3, '\t');
            let id = parse_label(fields.next().unwrap_or_default(), source, line)?;
            let name = fields.next().map(str::trim).unwrap_or_default();
            if name.is_empty() {
                return Err(bad_row(source, line, "expected <label><TAB><name>, found no name"));
            }
            if by_id.values().any(|n| n == name) {
                // config.json's label2id maps names to ids: two ids of one name would collapse.
                return Err(bad_row(source, line, &format!("duplicate class name {name:?}")));
            }
            if by_id.insert(id, name.to_owned()).is_some() {
                return Err(bad_row(source, line, &format!("duplicate label id {id}")));
            }
        }
        let num_labels = by_id.len();
        match by_id.last_key_value() {
            None => Err(DataError::Empty { origin: source.to_owned() }),
            Some((&max, _)) if max >= num_labels => Err(DataError::LabelOutOfRange { origin: source.to_owned(), label: max, num_labels }),
            Some(_) => Ok(LabelSet { names: by_id.into_values().collect() }),
        }
    }

    /// Names `"0"`..`"n-1"`, for data sets that come without a label file.
    pub fn numeric(n: usize) -> LabelSet {
        LabelSet { names: (0..n).map(|i| i.to_string()).collect() }
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when there are no labels.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Name of label `i`, or `None` when out of range.
    pub fn name(&self, i: usize) -> Option<&str> {
        self.names.get(i).map(String::as_str)
    }
}

/// Splits off a stratified, seeded `fraction` of the examples: returns
/// `(kept, held_aside)`, both in the original order.
///
/// Each class is split separately so both sides keep the label balance; when
/// `0 < fraction < 1`, a class with at least two examples keeps at least one on
/// each side (a validation set lacking a class would hide errors on it) and a
/// single-example class stays on the kept side. `fraction` is clamped to
/// `[0, 1]`; NaN counts as 0.
pub fn split_off(examples: Vec<Example>, fraction: f64, seed: u64) -> (Vec<Example>, Vec<Example>) {
    let fraction = if fraction.is_nan() { 0.0 } else { fraction.clamp(0.0, 1.0) };
    let mut rng = Rng::new(seed);
    let mut held = vec![false; examples.len()];
    for rows in rows_by_label(&examples).values() {
        let m = rows.len();
        let k = if fraction >= 1.0 {
            m
        } else if fraction <= 0.0 || m < 2 {
            0
        } else {
            ((fraction * m as f64).round() as usize).clamp(1, m - 1)
        };
        for i in rng.sample_indices(m, k) {
            held[rows[i]] = true;
        }
    }
    let (mut kept, mut aside) = (Vec::new(), Vec::new());
    for (example, is_held) in examples.into_iter().zip(held) {
        if is_held {
            aside.push(example);
        } else {
            kept.push(example);
        }
    }
    (kept, aside)
}

/// Picks `n` examples (all of them if `n >= len`), seeded and stratified: each
/// class gets its proportional share (largest remainder, ties to the lower
/// label), so small runs see the same label balance as the full set. The chosen
/// rows keep their original order.
pub fn subsample(examples: &[Example], n: usize, seed: u64) -> Vec<Example> {
    if n >= examples.len() {
        return examples.to_vec();
    }
    let groups = rows_by_label(examples);
    let total = examples.len() as u64;
    let mut quotas: Vec<(usize, u64)> = groups
        .values()
        .map(|rows| {
            let share = n as u64 * rows.len() as u64;
            ((share / total) as usize, share % total)
        })
        .collect();
    let assigned: usize = quotas.iter().map(|q| q.0).sum();
    let mut by_remainder: Vec<usize> = (0..quotas.len()).collect();
    by_remainder.sort_by(|&a, &b| quotas[b].1.cmp(&quotas[a].1).then(a.cmp(&b)));
    for &g in by_remainder.iter().take(n - assigned) {
        quotas[g].0 += 1;
    }
    let mut rng = Rng::new(seed);
    let mut chosen: Vec<usize> = groups
        .values()
        .zip(&quotas)
        .flat_map(|(rows, &(k, _))| rng.sample_indices(rows.len(), k).into_iter().map(|i| rows[i]).collect::<Vec<_>>())
        .collect();
    chosen.sort_unstable();
    chosen.into_iter().map(|i| examples[i].clone()).collect()
}

/// Row indices grouped by label, labels ascending, so seeded sampling visits
/// classes in a fixed order.
fn rows_by_label(examples: &[Example]) -> BTreeMap<usize, Vec<usize>> {
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, e) in examples.iter().enumerate() {
        groups.entry(e.label).or_default().push(i);
    }
    groups
}

/// Decodes UTF-8, reporting the line of the first bad byte, and drops a BOM.
/// The text of a data file: UTF-8, without a BOM, with LF line ends. CRLF is left to the
/// parsers (they drop the CR); a file with CRs and no LF at all (classic Mac OS line ends,
/// which some spreadsheets still export) has each CR read as a line end.
fn decode<'a>(bytes: &'a [u8], source: &str) -> Result<Cow<'a, str>, DataError> {
    let cr_only = !bytes.contains(&b'\n') && bytes.contains(&b'\r');
    let end = if cr_only { b'\r' } else { b'\n' };
    let text = std::str::from_utf8(bytes).map_err(|e| DataError::NotUtf8 {
        origin: source.to_owned(),
        line: bytes[..e.valid_up_to()].iter().filter(|&&b| b == end).count() + 1,
    })?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    Ok(if cr_only { Cow::Owned(text.replace('\r', "\n")) } else { Cow::Borrowed(text) })
}

/// Lines with their 1-based numbers, CR stripped, whitespace-only lines skipped.
fn non_blank_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split('\n').enumerate().map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l))).filter(|(_, l)| !l.trim().is_empty())
}

fn lower_fields<'a>(fields: impl Iterator<Item = &'a str>) -> Vec<String> {
    fields.map(|f| f.trim().to_lowercase()).collect()
}

fn is_text_column(name: &str) -> bool {
    matches!(name, "sentence" | "sentences" | "text")
}

fn is_label_column(name: &str) -> bool {
    matches!(name, "label" | "labels")
}

/// A header that is not recognised is reported as missing when it looks like a
/// data row (`looks_like_data`), the common mistake of a file without a header.
fn header_error(found: &str, looks_like_data: bool, expected: &'static str, source: &str) -> DataError {
    let (origin, found) = (source.to_owned(), excerpt(found));
    if looks_like_data {
        DataError::MissingHeader { origin, found, expected }
    } else {
        DataError::BadHeader { origin, found, expected }
    }
}

fn bad_row(source: &str, line: usize, reason: &str) -> DataError {
    DataError::BadRow { origin: source.to_owned(), line, reason: reason.to_owned() }
}

fn parse_label(value: &str, source: &str, line: usize) -> Result<usize, DataError> {
    let value = value.trim();
    let label = value.parse().map_err(|_| DataError::BadLabel { origin: source.to_owned(), line, value: excerpt(value) })?;
    check_label(label, source, line)
}

fn check_label(label: usize, source: &str, line: usize) -> Result<usize, DataError> {
    if label >= MAX_CLASSES {
        return Err(DataError::LabelTooLarge { origin: source.to_owned(), line, label });
    }
    Ok(label)
}

fn example(text: &str, label: usize, source: &str, line: usize) -> Result<Example, DataError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DataError::EmptyText { origin: source.to_owned(), line });
    }
    Ok(Example { text: text.to_owned(), label })
}

/// Replaces each run of tabs/CR/LF with one space and trims, matching what the
/// TSV parser would read back.
fn flatten_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_break = false;
    for c in text.chars() {
        if matches!(c, '\t' | '\r' | '\n') {
            if !in_break {
                out.push(' ');
            }
            in_break = true;
        } else {
            out.push(c);
            in_break = false;
        }
    }
    out.trim().to_owned()
}

/// TSV rows split on the last tab, so a stray tab inside a sentence stays part
/// of the sentence rather than shifting the label.
fn parse_tsv(text: &str, source: &str) -> Result<Vec<Example>, DataError> {
    let mut lines = non_blank_lines(text);
    let Some((_, header)) = lines.next() else {
        return Ok(Vec::new());
    };
    let cols = lower_fields(header.split('\t'));
    if cols.len() != 2 || !is_text_column(&cols[0]) || !is_label_column(&cols[1]) {
        let looks_like_data = header.rsplit_once('\t').is_some_and(|(_, label)| label.trim().parse::<usize>().is_ok());
        return Err(header_error(header, looks_like_data, TSV_HEADER, source));
    }
    lines
        .map(|(line, row)| {
            let Some((sentence, label)) = row.rsplit_once('\t') else {
                return Err(bad_row(source, line, "expected <sentence><TAB><label>, found no tab"));
            };
            let label = match parse_label(label, source, line) {
                // A sentence may hold a tab, so the label is the last field; when that field is
                // not a label and there are more than two, the row's shape is the error to name.
                Err(DataError::BadLabel { value, .. }) if sentence.contains('\t') => {
                    let fields = row.split('\t').count();
                    let reason =
                        format!("expected <sentence><TAB><label>, found {fields} tab-separated fields, the last ({value:?}) not a label");
                    return Err(bad_row(source, line, &reason));
                }
                label => label?,
            };
            example(sentence, label, source, line)
        })
        .collect()
}

/// One CSV record and the line it starts on.
struct CsvRecord {
    line: usize,
    fields: Vec<String>,
}

impl CsvRecord {
    fn is_blank(&self) -> bool {
        self.fields.len() == 1 && self.fields[0].trim().is_empty()
    }
}

/// Splits RFC-4180 CSV into records: quoted fields may hold commas, doubled
/// quotes and line breaks; records end with LF or CRLF. A quote inside an
/// unquoted field is kept literally, as most spreadsheet exports expect.
fn csv_records(text: &str, source: &str) -> Result<Vec<CsvRecord>, DataError> {
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        let start = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        loop {
            match chars.next() {
                None => {
                    fields.push(field);
                    break;
                }
                Some('"') if field.is_empty() && !quoted => {
                    quoted = true;
                    loop {
                        match chars.next() {
                            None => return Err(bad_row(source, start, "unterminated quoted field")),
                            Some('"') if chars.peek() == Some(&'"') => {
                                chars.next();
                                field.push('"');
                            }
                            Some('"') => break,
                            Some(c) => {
                                if c == '\n' {
                                    line += 1;
                                }
                                field.push(c);
                            }
                        }
                    }
                    let mut ahead = chars.clone();
                    let ends_field = match ahead.next() {
                        None | Some(',') | Some('\n') => true,
                        Some('\r') => ahead.next() == Some('\n'),
                        Some(_) => false,
                    };
                    if !ends_field {
                        return Err(bad_row(source, line, "unexpected character after a closing quote"));
                    }
                }
                Some(',') => {
                    fields.push(std::mem::take(&mut field));
                    quoted = false;
                }
                Some('\r') if chars.peek() == Some(&'\n') => {
                    chars.next();
                    line += 1;
                    fields.push(field);
                    break;
                }
                Some('\n') => {
                    line += 1;
                    fields.push(field);
                    break;
                }
                Some(c) => field.push(c),
            }
        }
        records.push(CsvRecord { line: start, fields });
    }
    Ok(records)
}

fn parse_csv(text: &str, source: &str) -> Result<Vec<Example>, DataError> {
    let records = csv_records(text, source)?;
    let mut records = records.into_iter().filter(|r| !r.is_blank());
    let Some(header) = records.next() else {
        return Ok(Vec::new());
    };
    let cols = lower_fields(header.fields.iter().map(String::as_str));
    let (Some(text_col), Some(label_col)) = (cols.iter().position(|c| is_text_column(c)), cols.iter().position(|c| is_label_column(c)))
    else {
        let looks_like_data = cols.iter().any(|c| c.parse::<usize>().is_ok());
        return Err(header_error(&header.fields.join(","), looks_like_data, CSV_HEADER, source));
    };
    records
        .map(|record| {
            if record.fields.len() != cols.len() {
                let reason = format!(
                    "expected {} fields as in the header, found {} (quote text that contains commas)",
                    cols.len(),
                    record.fields.len()
                );
                return Err(bad_row(source, record.line, &reason));
            }
            let label = parse_label(&record.fields[label_col], source, record.line)?;
            example(&record.fields[text_col], label, source, record.line)
        })
        .collect()
}

fn parse_jsonl(text: &str, source: &str) -> Result<Vec<Example>, DataError> {
    non_blank_lines(text)
        .map(|(line, row)| {
            let value: Value =
                serde_json::from_str(row).map_err(|e| DataError::Json { origin: source.to_owned(), line, message: e.to_string() })?;
            let Some(object) = value.as_object() else {
                return Err(bad_row(source, line, "expected a JSON object"));
            };
            let text = match ["text", "sentence"].iter().find_map(|&k| object.get(k).map(|v| (k, v))) {
                Some((_, Value::String(s))) => s,
                Some((key, _)) => return Err(bad_row(source, line, &format!("\"{key}\" must be a string"))),
                None => return Err(bad_row(source, line, "missing \"text\" (or \"sentence\")")),
            };
            let Some(label) = object.get("label") else {
                return Err(bad_row(source, line, "missing \"label\""));
            };
            let label = label.as_u64().and_then(|l| usize::try_from(l).ok()).ok_or_else(|| DataError::BadLabel {
                origin: source.to_owned(),
                line,
                value: label.to_string(),
            })?;
            example(text, check_label(label, source, line)?, source, line)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(text: &str, label: usize) -> Example {
        Example { text: text.to_owned(), label }
    }

    fn tsv(s: &str) -> Result<Vec<Example>, DataError> {
        parse(s.as_bytes(), Format::Tsv, "t.tsv")
    }

    fn csv(s: &str) -> Result<Vec<Example>, DataError> {
        parse(s.as_bytes(), Format::Csv, "t.csv")
    }

    fn jsonl(s: &str) -> Result<Vec<Example>, DataError> {
        parse(s.as_bytes(), Format::Jsonl, "t.jsonl")
    }

    /// `n0` examples labelled 0 followed by `n1` labelled 1, all distinct.
    fn dataset(n0: usize, n1: usize) -> Vec<Example> {
        (0..n0).map(|i| ex(&format!("neg {i}"), 0)).chain((0..n1).map(|i| ex(&format!("pos {i}"), 1))).collect()
    }

    #[test]
    fn format_from_extension() {
        assert_eq!(Format::from_path_name("a/train.TSV"), Some(Format::Tsv));
        assert_eq!(Format::from_path_name("x.csv"), Some(Format::Csv));
        assert_eq!(Format::from_path_name("x.jsonl"), Some(Format::Jsonl));
        assert_eq!(Format::from_path_name("x.json-lines"), Some(Format::Jsonl));
        assert_eq!(Format::from_path_name("x.json"), None);
        assert_eq!(Format::from_path_name("tsv"), None);
    }

    #[test]
    fn tsv_sst2_style() {
        let data = "sentence\tlabel\na stirring , funny film \t1\napparently reassembled .\t0\n";
        assert_eq!(tsv(data).unwrap(), vec![ex("a stirring , funny film", 1), ex("apparently reassembled .", 0)]);
    }

    #[test]
    fn tsv_bom_crlf_last_tab_and_header_variants() {
        let data = "\u{FEFF}Sentences\tLABELS\r\nhas\ta tab\t1\r\nplain\t0\r\n\r\n";
        assert_eq!(tsv(data).unwrap(), vec![ex("has\ta tab", 1), ex("plain", 0)]);
        assert_eq!(tsv("TEXT\tLabel\nx\t2").unwrap(), vec![ex("x", 2)]);
    }

    #[test]
    fn cr_only_line_ends_are_line_ends() {
        assert_eq!(tsv("sentence\tlabel\rgood\t1\r\rbad\t0\r").unwrap(), vec![ex("good", 1), ex("bad", 0)]);
        assert_eq!(csv("text,label\r\"a, b\",1\rc,0").unwrap(), vec![ex("a, b", 1), ex("c", 0)]);
        let labels = LabelSet::parse_tsv(b"label\tname\r0\tneg\r1\tpos\r", "labels.tsv").unwrap();
        assert_eq!(labels.names, ["neg", "pos"]);
        // Lines are counted by CR there too.
        assert!(matches!(parse(b"sentence\tlabel\rok\t1\rbad \xff\t0\r", Format::Tsv, "x"), Err(DataError::NotUtf8 { line: 3, .. })));
        // In a file with LFs, a CR inside a line stays part of the text.
        assert_eq!(tsv("sentence\tlabel\na\rb\t1\n").unwrap(), vec![ex("a\rb", 1)]);
    }

    #[test]
    fn tsv_errors() {
        assert!(matches!(tsv(""), Err(DataError::Empty { .. })));
        assert!(matches!(tsv("sentence\tlabel\n\n"), Err(DataError::Empty { .. })));
        assert!(matches!(
            tsv("great movie\t1\n"),
            Err(DataError::MissingHeader { ref found, .. }) if found == "great movie\t1"
        ));
        assert!(matches!(tsv("idx\tsentence\tlabel\n"), Err(DataError::BadHeader { .. })));
        assert!(matches!(tsv("label\tsentence\n"), Err(DataError::BadHeader { .. })));
        // A file with no line breaks is quoted by its start, not whole.
        let long = "é".repeat(100_000);
        let Err(DataError::BadHeader { found, .. }) = tsv(&long) else { panic!("not a header error") };
        assert_eq!(found, format!("{}…", "é".repeat(80)));
        let Err(DataError::BadLabel { value, .. }) = tsv(&format!("sentence\tlabel\nok\t{long}\n")) else { panic!("not a label error") };
        assert_eq!(value.chars().count(), 81);
        assert!(matches!(tsv("sentence\tlabel\nok\t1\nno tab here\n"), Err(DataError::BadRow { line: 3, .. })));
        assert!(matches!(
            tsv("sentence\tlabel\nok\t-1\n"),
            Err(DataError::BadLabel { line: 2, ref value, .. }) if value == "-1"
        ));
        assert!(matches!(tsv("sentence\tlabel\nok\tpos\n"), Err(DataError::BadLabel { .. })));
        // A row with a field too many names its shape, not a bad label; a tab inside the
        // sentence is still read, the label being the last field.
        let err = tsv("sentence\tlabel\nok\t1\tnote\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.tsv: line 2: expected <sentence><TAB><label>, found 3 tab-separated fields, the last (\"note\") not a label"
        );
        assert_eq!(tsv("sentence\tlabel\nleft\tright\t1\n").unwrap()[0].text, "left\tright");
        assert!(matches!(tsv("sentence\tlabel\n  \t1\n"), Err(DataError::EmptyText { line: 2, .. })));
        let err = parse(b"sentence\tlabel\nok\t1\nbad \xff\t0\n", Format::Tsv, "f.tsv").unwrap_err();
        assert!(matches!(err, DataError::NotUtf8 { line: 3, .. }));
        assert_eq!(err.to_string(), "f.tsv: line 3: not valid UTF-8");
    }

    #[test]
    fn csv_quoting() {
        let data = "id,label,text,extra\r\n\
                    1,0,\"hello, world\",x\r\n\
                    2,1,\"she said \"\"hi\"\"\",y\r\n\
                    3,1,\"two\nlines\",z\n\
                    4,0,plain \"quote\" inside,\n\
                    5,1,\"\",\"\"\n";
        let err = csv(data).unwrap_err();
        assert!(matches!(err, DataError::EmptyText { line: 7, .. }), "{err}");
        let data = data.replace("5,1,\"\",\"\"\n", "5,\"1\",\" spaced \",\"\"");
        assert_eq!(
            csv(&data).unwrap(),
            vec![ex("hello, world", 0), ex("she said \"hi\"", 1), ex("two\nlines", 1), ex("plain \"quote\" inside", 0), ex("spaced", 1),]
        );
    }

    #[test]
    fn csv_bom_and_blank_lines() {
        assert_eq!(csv("\u{FEFF}Sentence,Label\n\nfine,1\n\n").unwrap(), vec![ex("fine", 1)]);
    }

    #[test]
    fn csv_errors() {
        assert!(matches!(csv("text,label\n"), Err(DataError::Empty { .. })));
        assert!(matches!(csv("sentence,score\na,1\n"), Err(DataError::BadHeader { .. })));
        assert!(matches!(csv("good movie,1\n"), Err(DataError::MissingHeader { .. })));
        assert!(matches!(csv("text,label\nok,1\n\"open,1\nmore\n"), Err(DataError::BadRow { line: 3, .. })));
        assert!(matches!(csv("text,label\n\"a\"b,1\n"), Err(DataError::BadRow { line: 2, .. })));
        assert!(matches!(csv("text,label\nhello, world,1\n"), Err(DataError::BadRow { line: 2, .. })));
        assert!(matches!(csv("text,label\n\"multi\nline\",x\n"), Err(DataError::BadLabel { line: 2, .. })));
    }

    #[test]
    fn jsonl_parses() {
        let data = "{\"text\": \" a \", \"label\": 1}\r\n\n{\"sentence\": \"b\", \"label\": 0, \"x\": 5}\n";
        assert_eq!(jsonl(data).unwrap(), vec![ex("a", 1), ex("b", 0)]);
    }

    #[test]
    fn jsonl_errors() {
        assert!(matches!(jsonl("\n\n"), Err(DataError::Empty { .. })));
        assert!(matches!(jsonl("{\"text\": \"a\", \"label\": 1}\n{oops\n"), Err(DataError::Json { line: 2, .. })));
        assert!(matches!(jsonl("[1]"), Err(DataError::BadRow { line: 1, .. })));
        assert!(matches!(jsonl("{\"label\": 1}"), Err(DataError::BadRow { .. })));
        assert!(matches!(jsonl("{\"text\": 3, \"label\": 1}"), Err(DataError::BadRow { .. })));
        assert!(matches!(jsonl("{\"text\": \"a\"}"), Err(DataError::BadRow { .. })));
        for bad in ["-1", "1.5", "\"1\"", "null"] {
            let line = format!("{{\"text\": \"a\", \"label\": {bad}}}");
            assert!(matches!(jsonl(&line), Err(DataError::BadLabel { ref value, .. }) if value == bad), "{bad}");
        }
        assert!(matches!(jsonl("{\"text\": \"  \", \"label\": 1}"), Err(DataError::EmptyText { line: 1, .. })));
    }

    #[test]
    fn write_tsv_round_trips() {
        let examples = vec![ex("plain", 0), ex("with\ttab", 1), ex("cr\r\nlf\n", 2), ex("\"q\", c", 1)];
        let bytes = write_tsv(&examples).unwrap();
        assert!(bytes.starts_with(b"sentence\tlabel\n"));
        let back = parse(&bytes, Format::Tsv, "out").unwrap();
        assert_eq!(back, vec![ex("plain", 0), ex("with tab", 1), ex("cr lf", 2), ex("\"q\", c", 1)]);
        assert!(matches!(write_tsv(&[ex("ok", 0), ex("\n\t", 1)]), Err(DataError::EmptyText { line: 3, .. })));
    }

    #[test]
    fn label_checks() {
        let data = vec![ex("a", 0), ex("b", 2), ex("c", 2)];
        assert_eq!(label_counts(&data), vec![1, 0, 2]);
        assert_eq!(label_counts(&[]), Vec::<usize>::new());
        assert!(check_labels(&data, 3, "d").is_ok());
        assert!(matches!(check_labels(&data, 2, "d"), Err(DataError::LabelOutOfRange { label: 2, num_labels: 2, .. })));
        assert!(require_two_classes(&data, "d").is_ok());
        assert!(matches!(require_two_classes(&data[1..], "d"), Err(DataError::SingleClass { label: 2, .. })));
        assert!(matches!(require_two_classes(&[], "d"), Err(DataError::Empty { .. })));
    }

    /// A stray huge label is refused as it is read, before anything sized by the number of
    /// classes is allocated (10^12 labels once asked for 24 TB); usize::MAX does not wrap.
    #[test]
    fn labels_past_the_class_limit_are_refused_while_parsing() {
        for format in [Format::Tsv, Format::Jsonl] {
            for label in [MAX_CLASSES, 1_000_000_000_000, usize::MAX] {
                let bytes = match format {
                    Format::Tsv => format!("sentence\tlabel\nok\t0\nbig\t{label}\n"),
                    _ => format!("{{\"text\": \"ok\", \"label\": 0}}\n{{\"text\": \"big\", \"label\": {label}}}\n"),
                };
                let err = parse(bytes.as_bytes(), format, "d").unwrap_err();
                let line = if format == Format::Tsv { 3 } else { 2 };
                assert!(
                    matches!(err, DataError::LabelTooLarge { line: l, label: x, .. } if l == line && x == label),
                    "{format:?} {label}: {err:?}"
                );
            }
        }
        assert_eq!(
            parse(format!("sentence\tlabel\na\t0\nb\t{}\n", MAX_CLASSES - 1).as_bytes(), Format::Tsv, "d").unwrap()[1].label,
            MAX_CLASSES - 1
        );
    }

    #[test]
    fn label_set_parses_any_order() {
        let data = "label\tname\tdescription\r\n1\tpositive\tgood\tstuff\r\n0\tnegative\tbad\n";
        let set = LabelSet::parse_tsv(data.as_bytes(), "labels.tsv").unwrap();
        assert_eq!(set.names, vec!["negative", "positive"]);
        assert_eq!(set.len(), 2);
        assert_eq!(set.name(1), Some("positive"));
        assert_eq!(set.name(2), None);
        let no_description = LabelSet::parse_tsv(b"Label\tName\n0\ta\n1\tb\n", "l").unwrap();
        assert_eq!(no_description.names, vec!["a", "b"]);
        assert_eq!(LabelSet::numeric(3).names, vec!["0", "1", "2"]);
        assert!(LabelSet::numeric(0).is_empty());
    }

    #[test]
    fn label_set_errors() {
        let parse = |s: &str| LabelSet::parse_tsv(s.as_bytes(), "l");
        assert!(matches!(parse("label\tname\n"), Err(DataError::Empty { .. })));
        assert!(matches!(parse("0\tneg\n"), Err(DataError::MissingHeader { .. })));
        assert!(matches!(parse("id\tname\n"), Err(DataError::BadHeader { .. })));
        assert!(matches!(parse("label\tname\n0\ta\n0\tb\n"), Err(DataError::BadRow { line: 3, .. })));
        assert!(matches!(parse("label\tname\n0\n"), Err(DataError::BadRow { line: 2, .. })));
        assert!(matches!(parse("label\tname\nx\ta\n"), Err(DataError::BadLabel { .. })));
        let dup = parse("label\tname\n0\tsame\n1\tsame\n").unwrap_err();
        assert_eq!(dup.to_string(), "l: line 3: duplicate class name \"same\"");
        assert!(matches!(parse("label\tname\n0\ta\n2\tc\n"), Err(DataError::LabelOutOfRange { label: 2, num_labels: 2, .. })));
    }

    #[test]
    fn real_sst2_files_parse() {
        // Format fixtures copied from /work/shared/data/sst2 (first rows).
        let train = "sentence\tlabel\n\
            a stirring , funny and finally transporting re-imagining of beauty and the beast and 1930s horror films\t1\n\
            apparently reassembled from the cutting-room floor of any given daytime soap .\t0\n";
        let examples = tsv(train).unwrap();
        assert_eq!(examples.len(), 2);
        let labels = "label\tname\tdescription\n0\tnegative\tnegative movie-review sentence\n\
                      1\tpositive\tpositive movie-review sentence\n";
        let set = LabelSet::parse_tsv(labels.as_bytes(), "labels.tsv").unwrap();
        assert!(check_labels(&examples, set.len(), "train.tsv").is_ok());
    }

    #[test]
    fn split_off_is_stratified_and_deterministic() {
        let data = dataset(60, 40);
        let (kept, held) = split_off(data.clone(), 0.25, 7);
        assert_eq!(label_counts(&held), vec![15, 10]);
        assert_eq!(label_counts(&kept), vec![45, 30]);
        assert_eq!(split_off(data.clone(), 0.25, 7), (kept.clone(), held.clone()));
        assert_ne!(split_off(data.clone(), 0.25, 8).1, held);
        // Original order kept on both sides, and together they are the input.
        let position = |e: &Example| data.iter().position(|d| d == e).unwrap();
        assert!(kept.windows(2).all(|w| position(&w[0]) < position(&w[1])));
        assert!(held.windows(2).all(|w| position(&w[0]) < position(&w[1])));
        let mut positions: Vec<usize> = kept.iter().chain(&held).map(position).collect();
        positions.sort_unstable();
        assert_eq!(positions, (0..data.len()).collect::<Vec<_>>());
    }

    #[test]
    fn split_off_keeps_one_per_side_for_small_classes() {
        let data = dataset(2, 50);
        let (kept, held) = split_off(data.clone(), 0.01, 1);
        assert_eq!(label_counts(&held), vec![1, 1]);
        assert_eq!(label_counts(&kept), vec![1, 49]);
        let (kept, held) = split_off(data.clone(), 0.99, 1);
        assert_eq!(label_counts(&kept), vec![1, 1]);
        assert_eq!(held.len(), 50);
        assert_eq!(split_off(data.clone(), 0.0, 1).0.len(), 52);
        assert_eq!(split_off(data.clone(), f64::NAN, 1).0.len(), 52);
        assert_eq!(split_off(data, 1.0, 1).1.len(), 52);
        let (kept, held) = split_off(vec![ex("a", 0), ex("b", 1), ex("c", 1)], 0.5, 3);
        assert_eq!(label_counts(&kept), vec![1, 1]);
        assert_eq!(label_counts(&held), vec![0, 1]);
    }

    #[test]
    fn subsample_is_stratified_ordered_and_deterministic() {
        let data = dataset(70, 30);
        let s = subsample(&data, 10, 4);
        assert_eq!(label_counts(&s), vec![7, 3]);
        assert_eq!(s, subsample(&data, 10, 4));
        assert_ne!(s, subsample(&data, 10, 5));
        let position = |e: &Example| data.iter().position(|d| d == e).unwrap();
        assert!(s.windows(2).all(|w| position(&w[0]) < position(&w[1])));
        // 3 classes of equal size, 2 rows: largest remainder ties go to lower labels.
        let three: Vec<Example> = (0..9).map(|i| ex(&i.to_string(), i % 3)).collect();
        assert_eq!(label_counts(&subsample(&three, 2, 0)), vec![1, 1]);
        assert_eq!(subsample(&data, 1000, 0), data);
        assert!(subsample(&data, 0, 0).is_empty());
    }
}
