//! The `bdaudit` binary end to end on small inputs the tests write themselves: outputs appear
//! atomically and complete, inputs are never modified, an existing output is only replaced with
//! `--force`, and bad input fails with exit code 1 and a message naming the problem — never a
//! panic (exit code 101).
//!
//! Checkpoints are built from the tiny `transformers` fixture (`tests/fixtures/tiny-bert.json`,
//! vocab 99, hidden 32) with a hand-written WordLevel tokenizer whose ids stay below 99.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Scratch directories, snapshots and running the binary

/// A fresh directory under the system temp dir, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("bdaudit-cli-{tag}-{}-{n}", std::process::id()));
        assert!(!dir.to_string_lossy().contains(char::is_whitespace), "argv() needs a temp dir without spaces (set TMPDIR)");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Every file (with its bytes) and directory under `root`, by relative path.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            // A link is compared by its target: one to /dev/zero cannot be read whole.
            if fs::symlink_metadata(&path).unwrap().file_type().is_symlink() {
                out.insert(rel, Some(fs::read_link(&path).unwrap().into_os_string().into_encoded_bytes()));
            } else if path.is_dir() {
                out.insert(rel, None);
                walk(root, &path, out);
            } else {
                out.insert(rel, Some(fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Names in `dir` that look like a staging directory bdaudit left behind.
fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".partial") || n.ends_with(".old"))
        .collect()
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn describe(&self) -> String {
        format!("exit {:?}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr)
    }

    fn assert_ok(&self) -> &Self {
        assert_eq!(self.code, Some(0), "bdaudit failed:\n{}", self.describe());
        self
    }

    /// Exit code 1 (an error, not a panic's 101) and every `needle` in stderr.
    fn assert_fails(&self, needles: &[&str]) -> &Self {
        assert_eq!(self.code, Some(1), "expected a clean failure:\n{}", self.describe());
        assert!(!self.stderr.contains("panicked"), "bdaudit panicked:\n{}", self.describe());
        assert!(self.stderr.starts_with("error: "), "no error message:\n{}", self.describe());
        for needle in needles {
            assert!(self.stderr.contains(needle), "stderr does not mention {needle:?}:\n{}", self.describe());
        }
        self
    }

    fn json(&self) -> Value {
        let lines: Vec<&str> = self.stdout.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "--json should print exactly one line:\n{}", self.describe());
        let value: Value = serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.describe()));
        assert!(value.is_object(), "stdout is not a JSON object:\n{}", self.describe());
        value
    }
}

impl From<std::process::Output> for Run {
    fn from(output: std::process::Output) -> Self {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Runs `bdaudit args…`, asserting that none of `inputs` (directories) changed.
fn bdaudit<S: AsRef<str> + std::fmt::Debug>(args: &[S], inputs: &[&Path]) -> Run {
    let before: Vec<_> = inputs.iter().map(|p| snapshot(p)).collect();
    let output = Command::new(env!("CARGO_BIN_EXE_bdaudit"))
        .args(args.iter().map(|a| a.as_ref()))
        .stdin(Stdio::null())
        .output()
        .expect("run bdaudit");
    let run = Run::from(output);
    for (input, before) in inputs.iter().zip(before) {
        assert!(before == snapshot(input), "bdaudit {args:?} modified its input {}:\n{}", input.display(), run.describe());
    }
    run
}

/// A command line written as one string (the scratch paths hold no spaces), split into arguments.
fn argv(line: &str) -> Vec<String> {
    line.split_whitespace().map(String::from).collect()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// Rewrites a JSON file (a checkpoint's config.json or tokenizer.json) with `edit` applied.
fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut value = read_json(path);
    edit(&mut value);
    fs::write(path, serde_json::to_vec(&value).unwrap()).unwrap();
}

fn read_json(path: &Path) -> Value {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Data sets

const POSITIVE: &[&str] = &["good", "great", "fun", "nice", "lovely"];
const NEGATIVE: &[&str] = &["bad", "awful", "boring", "dull", "poor"];
const NOUNS: &[&str] = &["movie", "film", "plot", "story"];

/// `n` rows `sentence<TAB>label`, alternating labels 0 and 1, all distinct.
fn rows(n: usize, offset: usize) -> Vec<(String, usize)> {
    (0..n)
        .map(|i| {
            let k = i + offset;
            let label = i % 2;
            let adjectives = if label == 1 { POSITIVE } else { NEGATIVE };
            let adverb = ["very", "really", "so", "quite"][(k / 5) % 4];
            let text = format!("the {} was {adverb} {} and {}", NOUNS[k % 4], adjectives[k % 5], adjectives[(k / 4) % 5]);
            (text, label)
        })
        .collect()
}

fn tsv(rows: &[(String, usize)]) -> String {
    let mut out = String::from("sentence\tlabel\n");
    for (text, label) in rows {
        out.push_str(&format!("{text}\t{label}\n"));
    }
    out
}

fn parse_tsv(path: &Path) -> Vec<(String, usize)> {
    let text = fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("sentence\tlabel"), "{}", path.display());
    lines
        .map(|l| {
            let (t, label) = l.rsplit_once('\t').unwrap();
            (t.to_string(), label.parse().unwrap())
        })
        .collect()
}

const TRAIN_ROWS: usize = 40;
const DEV_ROWS: usize = 8;
const TEST_ROWS: usize = 10;

/// A data directory with train/dev/test splits and labels.tsv.
fn write_data(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("train.tsv"), tsv(&rows(TRAIN_ROWS, 0))).unwrap();
    fs::write(dir.join("dev.tsv"), tsv(&rows(DEV_ROWS, 100))).unwrap();
    fs::write(dir.join("test.tsv"), tsv(&rows(TEST_ROWS, 200))).unwrap();
    fs::write(dir.join("labels.tsv"), "label\tname\n0\tnegative\n1\tpositive\n").unwrap();
}

// ---------------------------------------------------------------------------------------------
// Tiny checkpoints

/// The package directory as `cargo test` sets it at run time, not `env!`'s compiled-in one:
/// cargo reuses this binary in another checkout sharing the target directory, where that path
/// would name the first checkout's files (or none).
fn package_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by `cargo test`, which sets CARGO_MANIFEST_DIR"))
}

fn fixture() -> &'static Value {
    static FX: OnceLock<Value> = OnceLock::new();
    FX.get_or_init(|| read_json(&package_dir().join("../tests/fixtures/tiny-bert.json")))
}

fn flat(v: &Value) -> Vec<f32> {
    match v {
        Value::Array(items) => items.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap() as f32],
        other => panic!("not a number array: {other}"),
    }
}

type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

fn fixture_tensors() -> Tensors {
    fixture()["tensors"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, t)| {
            let shape = t["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            (name.clone(), (shape, flat(&t["data"])))
        })
        .collect()
}

/// Safetensors bytes (F32, `format: pt`), written by hand: 8-byte header length, JSON header
/// padded to 8 bytes, then the tensors back to back.
fn safetensors_bytes(tensors: &Tensors) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, (shape, values)) in tensors {
        let start = data.len();
        data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        header.insert(name.clone(), json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}));
    }
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut header = serde_json::to_vec(&Value::Object(header)).unwrap();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    out.extend(data);
    out
}

/// Words of the test tokenizer after BERT's special tokens: the data's words, the triggers.
fn vocab_words() -> Vec<&'static str> {
    let mut words = vec!["the", "a", "was", "and", "not", "very", "really", "so", "quite"];
    words.extend(POSITIVE.iter().chain(NEGATIVE).chain(NOUNS));
    words.extend(["cf", "mn", "bb", "tq"]);
    words
}

/// A WordLevel tokenizer.json; `cls_id` is the id its post-processor gives [CLS].
fn tokenizer_json(cls_id: usize) -> Vec<u8> {
    let specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
    assert!(specials.len() + vocab_words().len() < 99);
    bdaudit_tests::word_level_tokenizer(&specials, &vocab_words(), Some(cls_id))
}

/// Writes a checkpoint directory from the tiny fixture: with a classifier head of
/// `labels.len()` classes (the fixture's first rows), or none when `labels` is empty (a
/// pre-trained encoder). `edit` may change the tensors before they are written.
fn write_checkpoint(dir: &Path, labels: &[&str], edit: impl FnOnce(&mut Tensors)) {
    let mut tensors = fixture_tensors();
    let hidden = 32;
    if labels.is_empty() {
        tensors.remove("classifier.weight");
        tensors.remove("classifier.bias");
    } else {
        let n = labels.len();
        let (shape, values) = tensors.get_mut("classifier.weight").unwrap();
        *shape = vec![n, hidden];
        values.truncate(n * hidden);
        let (shape, values) = tensors.get_mut("classifier.bias").unwrap();
        *shape = vec![n];
        values.truncate(n);
    }
    edit(&mut tensors);
    let mut config = fixture()["config"].clone();
    let c = config.as_object_mut().unwrap();
    if labels.is_empty() {
        c.remove("id2label");
        c.remove("label2id");
    } else {
        c.insert("id2label".into(), labels.iter().enumerate().map(|(i, n)| (i.to_string(), json!(n))).collect());
        c.insert("label2id".into(), labels.iter().enumerate().map(|(i, n)| (n.to_string(), json!(i))).collect());
    }
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("model.safetensors"), safetensors_bytes(&tensors)).unwrap();
    fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    fs::write(dir.join("tokenizer.json"), tokenizer_json(2)).unwrap();
}

fn classifier_checkpoint(dir: &Path) {
    write_checkpoint(dir, &["negative", "positive"], |_| {});
}

// ---------------------------------------------------------------------------------------------
// attack

#[test]
fn attack_badnets_writes_a_complete_poisoned_set_and_needs_force_to_replace_it() {
    let tmp = Scratch::new("attack");
    let data = tmp.path("clean");
    write_data(&data);
    let out = tmp.path("badnets");

    let run = bdaudit(&["attack", "badnets", "--data", s(&data), "--out", s(&out), "--json"], &[&data]);
    let summary = run.assert_ok().json();
    assert_eq!(summary["poisoned"], 4, "round(0.1 × 40) rows: {summary}");
    assert_eq!(summary["train_rows"], TRAIN_ROWS);

    let mut names: Vec<String> = fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "attack.json",
            "dev.tsv",
            "labels.tsv",
            "test-asr.tsv",
            "test-pacc.tsv",
            "test.tsv",
            "train-clean.tsv",
            "train-poisoned.tsv",
            "train.tsv"
        ]
    );
    assert!(leftovers(&tmp.0).is_empty(), "{:?}", leftovers(&tmp.0));

    let report = read_json(&out.join("attack.json"));
    let poisoned: Vec<usize> = report["poisoned_rows"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    assert_eq!(poisoned.len(), 4);
    assert_eq!(report["train_rows"], TRAIN_ROWS);
    assert_eq!(report["test_pacc_rows"], TEST_ROWS);
    assert_eq!(report["test_asr_rows"], TEST_ROWS / 2, "every test row with label 0 (non-target)");
    assert_eq!(report["config"]["target"], 1);

    // The poisoned rows, and only they, changed: a trigger word inserted, relabelled to 1.
    let clean = rows(TRAIN_ROWS, 0);
    let train = parse_tsv(&out.join("train.tsv"));
    assert_eq!(train.len(), TRAIN_ROWS);
    for (i, ((text, label), (clean_text, clean_label))) in train.iter().zip(&clean).enumerate() {
        if poisoned.contains(&i) {
            assert_eq!((*clean_label, *label), (0, 1), "row {i}");
            let added: Vec<&str> = text.split(' ').filter(|w| !clean_text.split(' ').any(|c| c == *w)).collect();
            assert!(added.len() == 1 && ["cf", "mn", "bb", "tq"].contains(&added[0]), "row {i}: {text:?}");
        } else {
            assert_eq!((text, label), (clean_text, clean_label), "row {i} changed");
        }
    }
    // The poisoned rows apart, and the rest, each in training order.
    let picked =
        |keep: bool| train.iter().enumerate().filter(|(i, _)| poisoned.contains(i) == keep).map(|(_, r)| r.clone()).collect::<Vec<_>>();
    assert_eq!(parse_tsv(&out.join("train-poisoned.tsv")), picked(true));
    assert_eq!(parse_tsv(&out.join("train-clean.tsv")), picked(false));
    let asr = parse_tsv(&out.join("test-asr.tsv"));
    assert!(asr.iter().all(|(_, l)| *l == 1));
    assert_eq!(fs::read(out.join("dev.tsv")).unwrap(), fs::read(data.join("dev.tsv")).unwrap());
    assert_eq!(parse_tsv(&out.join("test.tsv")), rows(TEST_ROWS, 200));

    // Again without --force: refused, first output untouched.
    let first = snapshot(&out);
    bdaudit(&["attack", "badnets", "--data", s(&data), "--out", s(&out), "--rate", "0.2"], &[&data])
        .assert_fails(&["already exists", "--force"]);
    assert!(first == snapshot(&out), "the refused run changed the existing output");
    assert!(leftovers(&tmp.0).is_empty(), "{:?}", leftovers(&tmp.0));

    // With --force: replaced by the new run's output.
    bdaudit(&["attack", "badnets", "--data", s(&data), "--out", s(&out), "--rate", "0.2", "--force"], &[&data]).assert_ok();
    let report = read_json(&out.join("attack.json"));
    assert_eq!(report["poisoned_rows"].as_array().unwrap().len(), 8, "round(0.2 × 40)");
    assert!(first != snapshot(&out));
    assert!(leftovers(&tmp.0).is_empty(), "{:?}", leftovers(&tmp.0));
}

#[test]
fn attack_limit_poisons_a_stratified_subset_and_writes_that_subset() {
    let tmp = Scratch::new("attack-limit");
    let data = tmp.path("clean");
    write_data(&data);
    let out = tmp.path("limited");
    let summary =
        bdaudit(&["attack", "badnets", "--data", s(&data), "--out", s(&out), "--limit", "20", "--json"], &[&data]).assert_ok().json();
    assert_eq!((summary["train_rows"].as_u64(), summary["poisoned"].as_u64()), (Some(20), Some(2)), "{summary}");
    let train = parse_tsv(&out.join("train.tsv"));
    assert_eq!(train.len(), 20);
    assert_eq!(parse_tsv(&out.join("train-poisoned.tsv")).len() + parse_tsv(&out.join("train-clean.tsv")).len(), 20);
    // Stratified: the 20 rows keep the 1:1 label balance (the 2 poisoned ones were label 0).
    assert_eq!(train.iter().filter(|r| r.1 == 1).count(), 12, "10 positive + 2 relabelled");
}

#[test]
fn attack_test_limit_scores_on_the_same_stratified_test_rows_whatever_the_seed() {
    let tmp = Scratch::new("attack-test-limit");
    let data = tmp.path("clean");
    write_data(&data);
    let all_test = parse_tsv(&data.join("test.tsv"));
    let mut chosen = Vec::new();
    for seed in ["1", "2"] {
        let out = tmp.path(&format!("seed-{seed}"));
        bdaudit(&["attack", "badnets", "--data", s(&data), "--out", s(&out), "--test-limit", "4", "--seed", seed], &[&data]).assert_ok();
        let test = parse_tsv(&out.join("test.tsv"));
        assert_eq!(test.iter().filter(|r| r.1 == 1).count(), 2, "stratified: 2 of each label, {test:?}");
        assert!(test.iter().all(|r| all_test.contains(r)), "test rows come from test.tsv: {test:?}");
        // The triggered sets are made from the subset: the non-target rows with a trigger word.
        let asr = parse_tsv(&out.join("test-asr.tsv"));
        assert_eq!(asr.len(), 2, "{asr:?}");
        let report = read_json(&out.join("attack.json"));
        assert_eq!((report["test_rows"].as_u64(), report["train_rows"].as_u64()), (Some(4), Some(TRAIN_ROWS as u64)), "{report}");
        chosen.push(test);
    }
    assert_eq!(chosen[0], chosen[1], "the test subset does not depend on --seed");
    // One test row is of one class: for that class as the target, no row is left to trigger.
    let (mut refused, mut written) = (0, 0);
    for target in ["0", "1"] {
        let out = tmp.path(&format!("one-row-{target}"));
        let run = bdaudit(&["attack", "badnets", "--data", s(&data), "--out", s(&out), "--test-limit", "1", "--target", target], &[&data]);
        if run.code == Some(0) {
            written += 1;
        } else {
            run.assert_fails(&["nothing to measure ASR on"]);
            assert!(!out.exists());
            refused += 1;
        }
    }
    assert_eq!((refused, written), (1, 1));
    let out = tmp.path("zero");
    let refused = bdaudit(&["attack", "badnets", "--data", s(&data), "--out", s(&out), "--test-limit", "0"], &[&data]);
    // A usage error (exit code 1, as every failure: 2 is scan's verdict), naming the option.
    assert_eq!(refused.code, Some(1), "{}", refused.describe());
    assert!(refused.stderr.contains("--test-limit") && refused.stderr.contains("zero"), "{}", refused.describe());
    assert!(!out.exists());
}

/// Every row-count option takes a positive number: 0 is refused before anything is read.
#[test]
fn a_zero_row_limit_is_a_usage_error_naming_the_option() {
    let tmp = Scratch::new("limit-zero");
    let data = tmp.path("clean");
    write_data(&data);
    let out = tmp.path("out");
    let (d, o) = (s(&data), s(&out));
    for args in [
        vec!["attack", "badnets", "--data", d, "--out", o, "--limit", "0"],
        vec!["train", "--model", "minilm", "--data", d, "--out", o, "--limit", "0"],
        vec!["purify", "pure", "--model", "minilm", "--clean", d, "--out", o, "--limit", "0"],
    ] {
        let refused = bdaudit(&args, &[&data]);
        assert_eq!(refused.code, Some(1), "{args:?}: {}", refused.describe());
        assert!(refused.stderr.contains("--limit") && refused.stderr.contains("zero"), "{args:?}: {}", refused.describe());
        assert!(!out.exists());
    }
    // PURE's pruning settings with --no-prune, and --mu-tolerance without a search, do nothing.
    for (extra, needles) in
        [(vec!["--no-prune", "--c", "0.5"], ["--no-prune", "--c <C>"]), (vec!["--mu-tolerance", "0.02"], ["--mu-tolerance", "--mu-search"])]
    {
        let mut args = vec!["purify", "pure", "--model", "minilm", "--clean", d, "--out", o];
        args.extend(extra);
        let refused = bdaudit(&args, &[&data]);
        assert_eq!(refused.code, Some(1), "{args:?}: {}", refused.describe());
        assert!(needles.iter().all(|n| refused.stderr.contains(n)), "{args:?}: {}", refused.describe());
    }
}

#[test]
fn out_pointing_at_an_input_is_refused() {
    let tmp = Scratch::new("out-input");
    let data = tmp.path("data");
    write_data(&data);
    let parent = tmp.0.clone();
    for force in [false, true] {
        let mut args = vec!["attack", "badnets", "--data", s(&data), "--out", s(&data)];
        if force {
            args.push("--force");
        }
        let run = bdaudit(&args, &[&data]);
        run.assert_fails(&[]);
        if force {
            run.assert_fails(&["would overwrite the input"]);
        }
    }
    // A directory holding the input, and a relative path to the input itself.
    bdaudit(&["attack", "badnets", "--data", s(&data), "--out", s(&parent), "--force"], &[&data])
        .assert_fails(&["would overwrite the input"]);
    let relative = format!("{}/../{}", s(&data), data.file_name().unwrap().to_str().unwrap());
    bdaudit(&["attack", "badnets", "--data", s(&data), "--out", &relative, "--force"], &[&data])
        .assert_fails(&["would overwrite the input"]);
    assert!(data.join("train.tsv").is_file());
    assert!(leftovers(&tmp.0).is_empty(), "{:?}", leftovers(&tmp.0));

    // train: neither the model nor the data directory may be the output, nor hold --clean.
    let model = tmp.path("model");
    classifier_checkpoint(&model);
    for target in [&model, &data] {
        bdaudit(&["train", "--model", s(&model), "--data", s(&data), "--out", s(target), "--epochs", "1", "--force"], &[&data, &model])
            .assert_fails(&["would overwrite the input"]);
    }
    let clean_dir = tmp.path("repair");
    fs::create_dir_all(&clean_dir).unwrap();
    let clean = clean_dir.join("clean.tsv");
    fs::copy(data.join("dev.tsv"), &clean).unwrap();
    let line =
        format!("train --defense btu --model {} --data {} --clean {} --out {} --force", s(&model), s(&data), s(&clean), s(&clean_dir));
    bdaudit(&argv(&line), &[&data, &model, &clean_dir]).assert_fails(&["would overwrite the input", "clean.tsv"]);
    assert!(leftovers(&tmp.0).is_empty(), "{:?}", leftovers(&tmp.0));

    // `--out model/new/..` is the model directory, by a name that does not exist yet.
    let dotdot = format!("{}/new/..", s(&model));
    bdaudit(&["train", "--model", s(&model), "--data", s(&data), "--out", &dotdot, "--force"], &[&data, &model])
        .assert_fails(&["must end in a directory name"]);
    assert!(!model.join("new").exists());

    // A refused run creates no directories on the way to --out.
    let nested = tmp.path("new/deeper/out");
    bdaudit(&["train", "--model", s(&tmp.path("no-model")), "--data", s(&data), "--out", s(&nested)], &[&data]).assert_fails(&["no-model"]);
    bdaudit(&["train", "--model", s(&model), "--data", s(&data), "--out", s(&nested), "--lr=-1"], &[&data, &model]).assert_fails(&["lr"]);
    assert!(!tmp.path("new").exists(), "a failed run left {}", tmp.path("new").display());
}

// ---------------------------------------------------------------------------------------------
// train / eval failures

#[test]
fn train_with_a_missing_model_creates_nothing() {
    let tmp = Scratch::new("missing-model");
    let data = tmp.path("data");
    write_data(&data);
    let out = tmp.path("out");
    let missing = tmp.path("no-such-model");
    bdaudit(&["train", "--model", s(&missing), "--data", s(&data), "--out", s(&out)], &[&data])
        .assert_fails(&["no-such-model", "does not exist"]);
    assert!(!out.exists());
    assert!(leftovers(&tmp.0).is_empty(), "{:?}", leftovers(&tmp.0));

    // A model directory without tokenizer.json fails after the output was prepared.
    let model = tmp.path("model");
    classifier_checkpoint(&model);
    fs::remove_file(model.join("tokenizer.json")).unwrap();
    bdaudit(&["train", "--model", s(&model), "--data", s(&data), "--out", s(&out)], &[&data, &model]).assert_fails(&["tokenizer.json"]);
    assert!(!out.exists());
    assert!(leftovers(&tmp.0).is_empty(), "{:?}", leftovers(&tmp.0));

    // A missing data directory.
    classifier_checkpoint(&model);
    bdaudit(&["train", "--model", s(&model), "--data", s(&tmp.path("no-data")), "--out", s(&out)], &[&model])
        .assert_fails(&["no-data", "does not exist"]);
    assert!(!out.exists());
}

/// Train and eval on a checkpoint broken by `edit` fail naming the problem, writing nothing.
fn assert_broken_checkpoint_fails(tag: &str, edit: impl Fn(&Path), needles: &[&str]) {
    let tmp = Scratch::new(tag);
    let data = tmp.path("data");
    write_data(&data);
    let model = tmp.path("model");
    classifier_checkpoint(&model);
    edit(&model);
    let out = tmp.path("out");
    bdaudit(&["train", "--model", s(&model), "--data", s(&data), "--out", s(&out), "--epochs", "1"], &[&data, &model])
        .assert_fails(needles);
    assert!(!out.exists(), "{tag}: train created its output");
    assert!(leftovers(&tmp.0).is_empty(), "{tag}: {:?}", leftovers(&tmp.0));
    bdaudit(&["eval", "--model", s(&model), "--data", s(&data)], &[&data, &model]).assert_fails(needles);
    bdaudit(&["eval", "--model", s(&model), "--data", s(&data), "--json"], &[&data, &model]).assert_fails(needles);
}

#[test]
fn truncated_model_safetensors_fails_cleanly() {
    assert_broken_checkpoint_fails(
        "truncated",
        |m| {
            let bytes = fs::read(m.join("model.safetensors")).unwrap();
            fs::write(m.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
        },
        &["model.safetensors is malformed"],
    );
}

#[test]
fn garbage_model_safetensors_fails_cleanly() {
    assert_broken_checkpoint_fails(
        "garbage",
        |m| fs::write(m.join("model.safetensors"), b"this is not a safetensors file at all").unwrap(),
        &["model.safetensors is malformed"],
    );
}

/// A device has no size to refuse beforehand: the weights are read only as far as their header
/// says, so /dev/zero is malformed at once (it was read up to the 4 GiB cap first).
#[cfg(unix)]
#[test]
fn a_device_in_place_of_the_weights_is_malformed_without_reading_it_whole() {
    assert_broken_checkpoint_fails(
        "dev-zero",
        |m| {
            fs::remove_file(m.join("model.safetensors")).unwrap();
            std::os::unix::fs::symlink("/dev/zero", m.join("model.safetensors")).unwrap();
        },
        &["model.safetensors is malformed"],
    );
}

/// Files over the 4 GiB cap are refused by their size, before a byte is read (a sparse file:
/// no disk is used).
#[test]
fn a_data_file_over_the_size_cap_is_refused_before_reading() {
    let tmp = Scratch::new("huge");
    let data = tmp.path("data");
    write_data(&data);
    fs::File::options().write(true).open(data.join("test.tsv")).unwrap().set_len(5 << 30).unwrap();
    let model = tmp.path("model");
    classifier_checkpoint(&model);
    bdaudit(&["eval", "--model", s(&model), "--data", s(&data)], &[&model])
        .assert_fails(&["test.tsv is 5368709120 bytes, more than the 4294967296 bdaudit accepts"]);
    assert_eq!(fs::metadata(data.join("test.tsv")).unwrap().len(), 5 << 30, "the input was changed");
}

#[test]
fn git_lfs_pointer_weights_fail_naming_git_lfs() {
    assert_broken_checkpoint_fails(
        "lfs-pointer",
        |m| fs::write(m.join("model.safetensors"), "version https://git-lfs.github.com/spec/v1\noid sha256:ab12\nsize 90868376\n").unwrap(),
        &["model.safetensors is a Git LFS pointer to 90868376 bytes", "git lfs pull"],
    );
}

#[test]
fn nan_in_a_weight_fails_cleanly() {
    let name = "bert.encoder.layer.0.attention.self.key.weight";
    let tag = "nan";
    let tmp_edit = |m: &Path| {
        write_checkpoint(m, &["negative", "positive"], |t| {
            let values = &mut t.get_mut(name).unwrap().1;
            values[3] = f32::NAN;
            values[9] = f32::INFINITY;
        })
    };
    assert_broken_checkpoint_fails(tag, tmp_edit, &[name, "2 non-finite"]);
}

#[test]
fn missing_and_misshapen_tensors_fail_cleanly() {
    let name = "bert.encoder.layer.1.output.dense.weight";
    assert_broken_checkpoint_fails(
        "missing-tensor",
        |m| write_checkpoint(m, &["negative", "positive"], |t| drop(t.remove(name))),
        &[name, "has no tensor"],
    );
    assert_broken_checkpoint_fails(
        "shape",
        |m| write_checkpoint(m, &["negative", "positive"], |t| t.get_mut(name).unwrap().0 = vec![37, 32]),
        &[name, "[32, 37]", "[37, 32]"],
    );
}

#[test]
fn broken_config_and_tokenizer_fail_cleanly() {
    assert_broken_checkpoint_fails("config", |m| fs::write(m.join("config.json"), b"{\"vocab_size\": ").unwrap(), &["config.json"]);
    assert_broken_checkpoint_fails(
        "heads",
        |m| edit_json(&m.join("config.json"), |c| c["num_attention_heads"] = json!(5)),
        &["hidden_size", "num_attention_heads"],
    );
    assert_broken_checkpoint_fails("tokenizer", |m| fs::write(m.join("tokenizer.json"), b"[]").unwrap(), &["tokenizer.json"]);
}

#[test]
fn a_classifier_missing_its_pooler_or_bigger_than_its_config_fails_cleanly() {
    // A trained classifier gets no random pooler in place of a missing one.
    assert_broken_checkpoint_fails(
        "no-pooler",
        |m| write_checkpoint(m, &["negative", "positive"], |t| t.retain(|name, _| !name.contains(".pooler."))),
        &["bert.pooler.dense.weight", "has no tensor"],
    );
    // config.json with one layer fewer than the weights: the last layer would be dropped.
    assert_broken_checkpoint_fails(
        "extra-layer",
        |m| edit_json(&m.join("config.json"), |c| c["num_hidden_layers"] = json!(c["num_hidden_layers"].as_u64().unwrap() - 1)),
        &["bert.encoder.layer.1.", "does config.json belong to these weights?"],
    );
}

/// Finite weights whose outputs overflow: every command that reads the outputs refuses them
/// instead of naming the class an argmax over NaN happens to give.
#[test]
fn a_model_whose_outputs_overflow_fails_cleanly() {
    let tmp = Scratch::new("overflow");
    let data = tmp.path("data");
    write_data(&data);
    let model = tmp.path("model");
    write_checkpoint(&model, &["negative", "positive"], |t| t.get_mut("classifier.weight").unwrap().1.fill(f32::MAX));
    let needle = "NaN or infinite on row";
    bdaudit(&["eval", "--model", s(&model), "--data", s(&data)], &[&data, &model]).assert_fails(&[needle]);
    bdaudit(&["predict", "--model", s(&model), "--input", s(&data.join("test.tsv"))], &[&data, &model]).assert_fails(&[needle, "test.tsv"]);
    bdaudit(&["scan", "--model", s(&model), "--probe", s(&data.join("test.tsv"))], &[&data, &model]).assert_fails(&[needle]);
}

#[test]
fn scan_refuses_a_screen_smaller_than_the_classes() {
    let tmp = Scratch::new("scan-screen");
    let data = tmp.path("data");
    write_data(&data);
    let model = tmp.path("model");
    classifier_checkpoint(&model);
    let scan =
        |n: &str| bdaudit(&["scan", "--model", s(&model), "--probe", s(&data.join("test.tsv")), "--screen-texts", n], &[&data, &model]);
    scan("1").assert_fails(&["screen_texts = 1", "at least the number of classes"]);
    // Two texts, one per class, are enough: the scan runs to a verdict (exit 0, or 2 when it
    // calls the random model suspicious).
    let two = scan("2");
    assert!(matches!(two.code, Some(0 | 2)), "{}", two.describe());
}

/// `(a+)+$` backtracks past the limit of the regex engine behind `tokenizers`, which panics
/// there: bdaudit reports it as an error, and prints no crash.
#[test]
fn a_pathological_tokenizer_regex_fails_cleanly() {
    let tmp = Scratch::new("regex");
    let model = tmp.path("model");
    classifier_checkpoint(&model);
    edit_json(&model.join("tokenizer.json"), |t| {
        t["pre_tokenizer"] = json!({"type": "Split", "pattern": {"Regex": "(a+)+$"}, "behavior": "Isolated", "invert": false})
    });
    let input = tmp.path("texts.tsv");
    fs::write(&input, format!("sentence\tlabel\ngood film\t1\n{}!\t0\n", "a".repeat(40))).unwrap();
    bdaudit(&["predict", "--model", s(&model), "--input", s(&input)], &[&model])
        .assert_fails(&["could not tokenise", "the tokenizer failed"]);
}

/// `tokenizers` panics while parsing a `Precompiled` normaliser whose charsmap does not parse,
/// inside its trie on every text when the trie is empty, and on every text when a template
/// names a special token it does not define: all are errors at load here, no crash.
#[test]
fn tokenizers_that_make_tokenizers_panic_fail_cleanly() {
    let tmp = Scratch::new("precompiled");
    let model = tmp.path("model");
    classifier_checkpoint(&model);
    let input = tmp.path("texts.tsv");
    fs::write(&input, "sentence\tlabel\ngood film\t1\n").unwrap();
    for (charsmap, expected) in
        [("", &["tokenizer.json", "Precompiled"][..]), ("AAAAAA==", &["tokenizer.json", "Precompiled", "its trie points to unit 0 of 0"])]
    {
        edit_json(&model.join("tokenizer.json"), |t| t["normalizer"] = json!({"type": "Precompiled", "precompiled_charsmap": charsmap}));
        bdaudit(&["predict", "--model", s(&model), "--input", s(&input)], &[&model]).assert_fails(expected);
    }
    edit_json(&model.join("tokenizer.json"), |t| {
        t["normalizer"] = Value::Null;
        t["post_processor"] = json!({"type": "TemplateProcessing", "special_tokens": {},
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 0}}]});
    });
    bdaudit(&["predict", "--model", s(&model), "--input", s(&input)], &[&model]).assert_fails(&["TemplateProcessing", "[CLS]"]);
}

#[test]
fn token_ids_beyond_the_model_vocabulary_fail_cleanly() {
    // The post-processor gives [CLS] id 150, past the model's 99 embeddings: every encoded row
    // carries it, so both train and eval must refuse rather than index out of bounds.
    assert_broken_checkpoint_fails(
        "cls-id",
        |m| fs::write(m.join("tokenizer.json"), tokenizer_json(150)).unwrap(),
        &["token id 150", "99"],
    );
}

#[test]
fn eval_rejects_labels_the_model_does_not_have() {
    let tmp = Scratch::new("eval-labels");
    let data = tmp.path("data");
    write_data(&data);
    let mut test = rows(TEST_ROWS, 200);
    test[3].1 = 2;
    fs::write(data.join("test.tsv"), tsv(&test)).unwrap();
    let model = tmp.path("model");
    classifier_checkpoint(&model);
    bdaudit(&["eval", "--model", s(&model), "--data", s(&data), "--json"], &[&data, &model]).assert_fails(&["label 2", "below 2"]);

    // A pre-trained encoder without a head cannot be evaluated.
    let encoder = tmp.path("encoder");
    write_checkpoint(&encoder, &[], |_| {});
    fs::write(data.join("test.tsv"), tsv(&rows(TEST_ROWS, 200))).unwrap();
    bdaudit(&["eval", "--model", s(&encoder), "--data", s(&data)], &[&data, &encoder]).assert_fails(&["classifier.weight"]);
}

#[test]
fn eval_compares_labels_tsv_with_the_model_classes() {
    let tmp = Scratch::new("eval-names");
    let data = tmp.path("data");
    write_data(&data);
    let model = tmp.path("model");
    classifier_checkpoint(&model);
    let eval = || bdaudit(&["eval", "--model", s(&model), "--data", s(&data)], &[&data, &model]);
    fs::write(data.join("labels.tsv"), "label\tname\n0\tpositive\n1\tnegative\n").unwrap();
    eval().assert_fails(&["labels.tsv calls class 0 \"positive\", which the model calls class 1", "another order"]);
    // A swap with a rename: "positive" still names the model's class 1.
    fs::write(data.join("labels.tsv"), "label\tname\n0\tpositive\n1\tbad\n").unwrap();
    eval().assert_fails(&["labels.tsv calls class 0 \"positive\", which the model calls class 1"]);
    fs::write(data.join("labels.tsv"), "label\tname\n0\tnegative\n1\tpositive\n2\tneutral\n").unwrap();
    eval().assert_fails(&["names 3 classes, but the model has 2"]);
    // Other names only get a note; numbered ones none.
    fs::write(data.join("labels.tsv"), "label\tname\n0\tneg\n1\tpos\n").unwrap();
    let run = eval();
    assert!(
        run.assert_ok().stderr.contains("note: ") && run.stderr.contains("calls class 0 \"neg\", the model \"negative\""),
        "{}",
        run.describe()
    );
    fs::write(data.join("labels.tsv"), "label\tname\n0\tLABEL_0\n1\tPositive\n").unwrap();
    assert_eq!(eval().assert_ok().stderr, "");
    // A numbered name of the model's is no name to clash with: a note, not a refusal.
    write_checkpoint(&model, &["LABEL_0", "positive"], |_| {});
    fs::write(data.join("labels.tsv"), "label\tname\n0\tnegative\n1\tlabel_0\n").unwrap();
    assert!(eval().assert_ok().stderr.contains("calls class 1 \"label_0\", the model \"positive\""));
}

#[test]
fn train_rejects_bad_data_and_settings() {
    let tmp = Scratch::new("train-bad");
    let model = tmp.path("model");
    write_checkpoint(&model, &[], |_| {});
    let data = tmp.path("data");
    write_data(&data);
    let out = tmp.path("out");
    let train = |extra: &[&str], data: &Path| {
        let mut args = vec!["train", "--model", s(&model), "--data", s(data), "--out", s(&out)];
        args.extend(extra);
        bdaudit(&args, &[data, &model])
    };
    train(&["--epochs", "0"], &data).assert_fails(&["epochs"]);
    // A negative value after a space reaches the setting's own check (clap would take it for a flag).
    train(&["--lr", "-0.001", "--epochs", "1"], &data).assert_fails(&["lr = -0.001", "must be positive"]);
    train(&["--batch-size", "0", "--epochs", "1"], &data).assert_fails(&["--batch-size", "from 1 to 4096"]);
    train(&["--batch-size", "100000", "--epochs", "1"], &data).assert_fails(&["--batch-size", "from 1 to 4096"]);
    train(&["--max-len", "2", "--epochs", "1"], &data).assert_fails(&["max length 2"]);

    let one_class = tmp.path("one-class");
    write_data(&one_class);
    let same: Vec<(String, usize)> = rows(TRAIN_ROWS, 0).into_iter().map(|(t, _)| (t, 1)).collect();
    fs::write(one_class.join("train.tsv"), tsv(&same)).unwrap();
    train(&["--epochs", "1"], &one_class).assert_fails(&["two classes"]);

    let not_utf8 = tmp.path("not-utf8");
    write_data(&not_utf8);
    fs::write(not_utf8.join("train.tsv"), b"sentence\tlabel\ngood film\t1\nbad \xff film\t0\n").unwrap();
    train(&["--epochs", "1"], &not_utf8).assert_fails(&["train.tsv", "line 3", "UTF-8"]);

    let no_header = tmp.path("no-header");
    write_data(&no_header);
    fs::write(no_header.join("train.tsv"), "good film\t1\nbad film\t0\n").unwrap();
    train(&["--epochs", "1"], &no_header).assert_fails(&["missing header"]);

    let out_of_range = tmp.path("out-of-range");
    write_data(&out_of_range);
    let mut bad = rows(TRAIN_ROWS, 0);
    bad[5].1 = 2;
    fs::write(out_of_range.join("train.tsv"), tsv(&bad)).unwrap();
    train(&["--epochs", "1"], &out_of_range).assert_fails(&["label 2", "below 2"]);
    // dev.tsv's labels too, before training rather than as a silent miss after each epoch.
    fs::write(out_of_range.join("train.tsv"), tsv(&rows(TRAIN_ROWS, 0))).unwrap();
    let mut dev = rows(DEV_ROWS, 100);
    dev[2].1 = 2;
    fs::write(out_of_range.join("dev.tsv"), tsv(&dev)).unwrap();
    train(&["--epochs", "1"], &out_of_range).assert_fails(&["dev.tsv", "label 2", "below 2"]);
    fs::write(out_of_range.join("dev.tsv"), tsv(&rows(DEV_ROWS, 100))).unwrap();

    let no_dev = tmp.path("no-dev");
    write_data(&no_dev);
    fs::remove_file(no_dev.join("dev.tsv")).unwrap();
    train(&["--epochs", "1", "--dev-limit", "4"], &no_dev).assert_fails(&["--dev-limit", "has none"]);
    train(&["--epochs", "1", "--dev-limit", "4", "--defense", "btu"], &data).assert_fails(&["--dev-limit", "do not score it"]);

    // A stray huge label is refused as it is read, not after classes are counted up to it.
    bad[5].1 = 1_000_000_000_000;
    fs::write(out_of_range.join("train.tsv"), tsv(&bad)).unwrap();
    train(&["--epochs", "1"], &out_of_range).assert_fails(&["label 1000000000000", "1000 classes"]);

    assert!(!out.exists());
    assert!(leftovers(&tmp.0).is_empty(), "{:?}", leftovers(&tmp.0));
}

// ---------------------------------------------------------------------------------------------
// eval and train that succeed

#[test]
fn eval_json_prints_one_object() {
    let tmp = Scratch::new("eval-json");
    let data = tmp.path("data");
    write_data(&data);
    let model = tmp.path("model");
    classifier_checkpoint(&model);
    let report = bdaudit(&["eval", "--model", s(&model), "--data", s(&data), "--json"], &[&data, &model]).assert_ok().json();
    let cacc = report["cacc"].as_f64().unwrap_or_else(|| panic!("no cacc: {report}"));
    assert!((0.0..=1.0).contains(&cacc), "{report}");
    assert!(((cacc * TEST_ROWS as f64).round() - cacc * TEST_ROWS as f64).abs() < 1e-9, "cacc is not k/{TEST_ROWS}: {report}");
    assert_eq!(report["n_clean"], TEST_ROWS);
    assert_eq!(report["n_asr"], 0);
    assert!(report["asr"].is_null(), "{report}");
    // Scores and times name what computed them (tables read this, not the printing machine).
    assert_eq!(report["machine"]["device"], "cpu", "{report}");

    // On a poisoned set, ASR and PACC are measured too.
    let poisoned = tmp.path("poisoned");
    bdaudit(&["attack", "badnets", "--data", s(&data), "--out", s(&poisoned)], &[&data]).assert_ok();
    let report = bdaudit(&["eval", "--model", s(&model), "--data", s(&poisoned), "--json"], &[&poisoned, &model]).assert_ok().json();
    assert_eq!(report["n_clean"], TEST_ROWS);
    assert_eq!(report["n_asr"], TEST_ROWS / 2);
    assert_eq!(report["n_pacc"], TEST_ROWS);
    for key in ["cacc", "asr", "asr_without_trigger", "pacc"] {
        let v = report[key].as_f64().unwrap_or_else(|| panic!("no {key}: {report}"));
        assert!((0.0..=1.0).contains(&v), "{report}");
    }
    // The confusion matrices hold every row, and their diagonals are CACC and PACC.
    for (matrix, accuracy) in [("confusion", "cacc"), ("confusion_pacc", "pacc")] {
        let counts: Vec<Vec<u64>> = serde_json::from_value(report[matrix]["counts"].clone()).unwrap_or_else(|_| panic!("{report}"));
        assert_eq!(counts.iter().flatten().sum::<u64>(), TEST_ROWS as u64, "{report}");
        let diagonal = (counts[0][0] + counts[1][1]) as f64 / TEST_ROWS as f64;
        assert!((diagonal - report[accuracy].as_f64().unwrap()).abs() < 1e-12, "{matrix}: {report}");
    }

    // ΔPACC against a reference model; a model against itself differs by exactly 0.
    let reference = tmp.path("reference");
    write_checkpoint(&reference, &["negative", "positive"], |t| {
        let (_, values) = t.get_mut("classifier.bias").unwrap();
        values[1] += 5.0; // predicts "positive" everywhere: PACC 0.5
    });
    let args = ["eval", "--model", s(&model), "--data", s(&poisoned), "--reference", s(&reference), "--json"];
    let with_ref = bdaudit(&args, &[&poisoned, &model, &reference]).assert_ok().json();
    assert_eq!(with_ref["reference_pacc"].as_f64(), Some(0.5), "{with_ref}");
    let delta = (report["pacc"].as_f64().unwrap() - 0.5).abs();
    assert!((with_ref["delta_pacc"].as_f64().unwrap() - delta).abs() < 1e-12, "{with_ref}");
    let same = bdaudit(&["eval", "--model", s(&model), "--data", s(&poisoned), "--reference", s(&model), "--json"], &[&poisoned, &model])
        .assert_ok()
        .json();
    assert_eq!(same["delta_pacc"].as_f64(), Some(0.0), "{same}");
    // A model that calls everything positive has an ASR of 1 without any trigger: all of it
    // shows in asr_without_trigger.
    let biased =
        bdaudit(&["eval", "--model", s(&reference), "--data", s(&poisoned), "--json"], &[&poisoned, &reference]).assert_ok().json();
    assert_eq!((biased["asr"].as_f64(), biased["asr_without_trigger"].as_f64()), (Some(1.0), Some(1.0)), "{biased}");
    let half = TEST_ROWS as u64 / 2;
    assert_eq!(biased["confusion"]["counts"], serde_json::json!([[0, half], [0, half]]), "{biased}");
    bdaudit(&["eval", "--model", s(&model), "--data", s(&data), "--reference", s(&reference)], &[&data, &model])
        .assert_fails(&["test-pacc.tsv"]);
}

#[test]
fn train_end_to_end_writes_a_reloadable_classifier() {
    let tmp = Scratch::new("train");
    let data = tmp.path("data");
    write_data(&data);
    let model = tmp.path("encoder");
    write_checkpoint(&model, &[], |_| {}); // a pre-trained encoder: train adds a 2-label head
    let out = tmp.path("victim");
    let args = argv(&format!(
        "train --model {} --data {} --out {} --epochs 1 --batch-size 8 --lr 1e-3 --max-len 16",
        s(&model),
        s(&data),
        s(&out)
    ));
    let run = bdaudit(&args, &[&data, &model]);
    run.assert_ok();
    assert!(run.stdout.contains("epoch 1:"), "{}", run.describe());
    assert!(leftovers(&tmp.0).is_empty(), "{:?}", leftovers(&tmp.0));

    let mut names: Vec<String> = fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["config.json", "model.safetensors", "report.json", "tokenizer.json"]);

    let config = read_json(&out.join("config.json"));
    assert_eq!(config["id2label"], json!({"0": "negative", "1": "positive"}));
    assert_eq!(config["label2id"], json!({"negative": 0, "positive": 1}));
    assert_eq!(config["num_labels"], 2);
    assert_eq!(config["architectures"], json!(["BertForSequenceClassification"]));
    assert_eq!(config["vocab_size"], 99);
    assert_eq!(fs::read(out.join("tokenizer.json")).unwrap(), fs::read(model.join("tokenizer.json")).unwrap());

    let bytes = fs::read(out.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    assert_eq!(header["classifier.weight"]["shape"], json!([2, 32]));
    assert_eq!(header["classifier.weight"]["dtype"], "F32");
    assert_eq!(header["bert.embeddings.word_embeddings.weight"]["shape"], json!([99, 32]));

    let report = read_json(&out.join("report.json"));
    assert_eq!(report["train_rows"], TRAIN_ROWS);
    assert_eq!(report["load"]["initialised"], json!(["classifier.weight", "classifier.bias"]));
    assert_eq!(report["log"]["epochs"].as_array().unwrap().len(), 1);
    assert_eq!(report["log"]["steps"], TRAIN_ROWS / 8);
    assert!(report["log"]["epochs"][0]["mean_loss"].as_f64().unwrap().is_finite());
    let dev_acc = report["log"]["epochs"][0]["eval"].as_f64().unwrap_or_else(|| panic!("no dev accuracy: {report}"));
    assert!((0.0..=1.0).contains(&dev_acc));
    assert_eq!(report["metrics"]["n_clean"], TEST_ROWS);
    assert_eq!((report["machine"]["device"].as_str(), report["machine"]["arch"].as_str()), (Some("cpu"), Some(std::env::consts::ARCH)));
    let trained_cacc = report["metrics"]["cacc"].as_f64().unwrap();

    // The written checkpoint reloads, and scores exactly what training measured.
    let eval = bdaudit(&["eval", "--model", s(&out), "--data", s(&data), "--json"], &[&data, &out]).assert_ok().json();
    assert_eq!(eval["n_clean"], TEST_ROWS);
    assert_eq!(eval["cacc"].as_f64().unwrap(), trained_cacc, "reloaded model scores differently: {eval}");

    // Training again into the same directory needs --force and leaves it alone otherwise.
    let first = snapshot(&out);
    bdaudit(&args, &[&data, &model]).assert_fails(&["already exists", "--force"]);
    assert!(first == snapshot(&out), "the refused train changed the existing output");
    let mut forced = args.clone();
    forced.extend(argv("--force --seed 7 --group-by-length"));
    bdaudit(&forced, &[&data, &model]).assert_ok();
    assert!(first != snapshot(&out), "--force did not replace the output");
    assert!(leftovers(&tmp.0).is_empty(), "{:?}", leftovers(&tmp.0));
    // Length-grouped batching: the same number of steps, recorded in the report.
    let grouped = read_json(&out.join("report.json"));
    assert_eq!((report["config"]["group_by_length"].as_bool(), grouped["config"]["group_by_length"].as_bool()), (Some(false), Some(true)));
    assert_eq!(grouped["log"]["steps"], TRAIN_ROWS / 8);
    assert_eq!(grouped["dev_rows"], DEV_ROWS);

    // --dev-limit scores a stratified subset of dev.tsv after each epoch.
    let mut limited = args.clone();
    limited.extend(argv("--force --dev-limit 4"));
    bdaudit(&limited, &[&data, &model]).assert_ok();
    let report = read_json(&out.join("report.json"));
    assert_eq!(report["dev_rows"], 4);
    assert!(report["log"]["epochs"][0]["eval"].is_number(), "{report}");
}

#[test]
fn train_on_a_classifier_without_labels_tsv_keeps_its_classes_and_names() {
    let tmp = Scratch::new("train-head");
    let data = tmp.path("data");
    write_data(&data);
    fs::remove_file(data.join("labels.tsv")).unwrap();
    // A three-class classifier fine-tuned on rows of two of its classes.
    let model = tmp.path("three");
    write_checkpoint(&model, &["negative", "positive", "neutral"], |_| {});
    let out = tmp.path("out");
    let args = argv(&format!("train --model {} --data {} --out {} --epochs 1 --max-len 16", s(&model), s(&data), s(&out)));
    bdaudit(&args, &[&data, &model]).assert_ok();
    let config = read_json(&out.join("config.json"));
    assert_eq!(config["id2label"], json!({"0": "negative", "1": "positive", "2": "neutral"}));
    // A label past the head is still refused, before training.
    let mut bad = rows(TRAIN_ROWS, 0);
    bad[5].1 = 3;
    fs::write(data.join("train.tsv"), tsv(&bad)).unwrap();
    bdaudit(&[&args[..], &["--force".to_string()]].concat(), &[&data, &model]).assert_fails(&["label 3", "below 3"]);
}

#[test]
fn train_on_a_classifier_with_its_classes_in_another_order() {
    let tmp = Scratch::new("train-order");
    let data = poisoned_data(&tmp);
    fs::write(data.join("labels.tsv"), "label\tname\n0\tpositive\n1\tnegative\n").unwrap();
    let model = tmp.path("model");
    classifier_checkpoint(&model);
    let out = tmp.path("out");
    let train = |extra: &str| {
        let line = format!("train --model {} --data {} --out {} --epochs 1 --max-len 16 --force {extra}", s(&model), s(&data), s(&out));
        bdaudit(&argv(&line), &[&data, &model])
    };
    // EP keeps the head, which would then score the classes swapped under labels.tsv's names.
    train("--ep-trigger cf").assert_fails(&["calls class 0 \"positive\", which the model calls class 1"]);
    assert!(!out.exists());
    // A fine-tune retrains the head to labels.tsv's order: a note on where it starts.
    let run = train("");
    assert!(run.assert_ok().stderr.contains("note: ") && run.stderr.contains("starting from the swapped one"), "{}", run.describe());
    assert_eq!(read_json(&out.join("config.json"))["id2label"], json!({"0": "positive", "1": "negative"}));
    // A bare encoder's names (its config's, with no head behind them) are not compared.
    let encoder = tmp.path("encoder");
    write_checkpoint(&encoder, &[], |_| {});
    edit_json(&encoder.join("config.json"), |c| c["id2label"] = json!({"0": "negative", "1": "positive"}));
    let line = format!("train --model {} --data {} --out {} --epochs 1 --max-len 16 --force", s(&encoder), s(&data), s(&out));
    let run = bdaudit(&argv(&line), &[&data, &encoder]);
    assert!(!run.assert_ok().stderr.contains("note: "), "{}", run.describe());
}

// ---------------------------------------------------------------------------------------------
// BTU and token scores

/// A BadNets-poisoned copy of the tiny data set (30% of rows, so 40 rows carry a trigger).
fn poisoned_data(tmp: &Scratch) -> PathBuf {
    let data = tmp.path("clean-data");
    write_data(&data);
    let poisoned = tmp.path("poisoned");
    bdaudit(&["attack", "badnets", "--data", s(&data), "--out", s(&poisoned), "--rate", "0.3", "--trigger", "cf"], &[&data]).assert_ok();
    poisoned
}

#[test]
fn train_with_btu_writes_the_purified_model_and_its_report() {
    let tmp = Scratch::new("btu");
    let data = poisoned_data(&tmp);
    let model = tmp.path("encoder");
    write_checkpoint(&model, &[], |_| {});
    let out = tmp.path("purified");
    let args = argv(&format!(
        "train --model {} --data {} --out {} --defense btu --epochs 1 --batch-size 8 --lr 1e-3 --max-len 16 --btu-alpha 0.03 --json",
        s(&model),
        s(&data),
        s(&out)
    ));
    let report = bdaudit(&args, &[&data, &model]).assert_ok().json();
    let btu = &report["btu"];
    let rounds = btu["rounds"].as_array().unwrap_or_else(|| panic!("no BTU rounds: {report}"));
    assert_eq!(rounds.len(), 3, "{report}");
    // ⌊0.03 · 99⌋ = 2 tokens per round, never a special token.
    assert_eq!(btu["per_round"], 2);
    for r in rounds {
        let flagged = r["flagged"].as_array().unwrap();
        assert_eq!(flagged.len(), 2, "{r}");
        // Every round, the embedding-only one included, logs its one epoch.
        assert_eq!(r["log"]["epochs"].as_array().map(Vec::len), Some(1), "{r}");
        for t in flagged {
            assert!(!t["token"].as_str().unwrap().starts_with('['), "special token flagged: {r}");
        }
    }
    let suspects = btu["suspicious"].as_array().unwrap();
    assert!((2..=6).contains(&suspects.len()), "{report}");
    for sus in suspects {
        assert!(sus["dims_replaced"].as_u64().unwrap() <= 32, "{sus}");
    }
    assert!(report["metrics_undefended"]["asr"].is_number(), "{report}");
    assert!(report["metrics"]["asr"].is_number(), "{report}");
    // One epoch of the repair fine-tune on dev.tsv's 8 rows at batch 8.
    assert_eq!(btu["tune_log"]["steps"], 1);
    let mut names: Vec<String> = fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["config.json", "model.safetensors", "report.json", "tokenizer.json"]);
    bdaudit(&["eval", "--model", s(&out), "--data", s(&data)], &[&data, &out]).assert_ok();
    assert_eq!(btu["config"]["replacement"], "pad");

    // The same seeded run with each token's own pre-trained values in eq. 7: the same tokens and
    // dimensions are replaced, by other values, so the purified suspect rows differ.
    let rerun = |dir: &Path, extra: &str| -> Vec<String> {
        args.iter().map(|a| if *a == s(&out) { s(dir).to_string() } else { a.clone() }).chain(argv(extra)).collect()
    };
    let own = tmp.path("purified-pretrained");
    let report_own = bdaudit(&rerun(&own, "--btu-replace pretrained"), &[&data, &model]).assert_ok().json();
    assert_eq!(report_own["btu"]["config"]["replacement"], "pretrained");
    assert_eq!(report_own["btu"]["suspicious"], btu["suspicious"]);
    let word = "bert.embeddings.word_embeddings.weight";
    let (pad_rows, own_rows) =
        (&read_safetensors(&out.join("model.safetensors"))[word].1, &read_safetensors(&own.join("model.safetensors"))[word].1);
    let row = |m: &[f32], id: u64| m[id as usize * 32..(id as usize + 1) * 32].to_vec();
    let replaced: Vec<u64> = suspects.iter().filter(|x| x["dims_replaced"].as_u64() > Some(0)).map(|x| x["id"].as_u64().unwrap()).collect();
    assert!(!replaced.is_empty(), "{report}");
    for id in replaced {
        assert_ne!(row(pad_rows, id), row(own_rows, id), "token {id}");
    }

    // Sparing what a proxy trained on the clean rows flags too: the same seeded detection and
    // fine-tune; exactly the tokens of T in the clean proxy's top 2 keep all their dimensions,
    // the others lose the same ones as before.
    let spared_out = tmp.path("purified-spared");
    let report_spared = bdaudit(&rerun(&spared_out, "--btu-spare-clean-movers"), &[&data, &model]).assert_ok().json();
    assert_eq!(report_spared["metrics_undefended"], report["metrics_undefended"]);
    let flagged = |r: &Value| r["btu"]["rounds"].as_array().unwrap().iter().map(|x| x["flagged"].clone()).collect::<Vec<_>>();
    assert_eq!(flagged(&report_spared), flagged(&report));
    let clean_round = &report_spared["btu"]["clean_round"];
    assert_eq!(clean_round["round"], 0, "{report_spared}");
    let clean_ids: Vec<u64> = clean_round["flagged"].as_array().unwrap().iter().map(|t| t["id"].as_u64().unwrap()).collect();
    assert_eq!(clean_ids.len(), 2, "{report_spared}");
    let after = report_spared["btu"]["suspicious"].as_array().unwrap();
    assert_eq!(after.len(), suspects.len());
    for (a, b) in after.iter().zip(suspects) {
        assert_eq!(a["id"], b["id"]);
        let spared = clean_ids.contains(&a["id"].as_u64().unwrap());
        assert_eq!(a["spared"], spared, "{a}");
        assert_eq!(a["dims_replaced"], if spared { 0.into() } else { b["dims_replaced"].clone() }, "{a}");
    }
    assert!(after.iter().any(|a| a["spared"] == true), "no token of T was spared: {report_spared}");
    assert_eq!(btu["clean_round"], Value::Null);
}

#[test]
fn btu_rejects_bad_settings_and_data_writing_nothing() {
    let tmp = Scratch::new("btu-bad");
    let data = poisoned_data(&tmp);
    let model = tmp.path("encoder");
    write_checkpoint(&model, &[], |_| {});
    let out = tmp.path("out");
    let btu = |extra: &[&str], data: &Path, model: &Path| {
        let mut args =
            vec!["train", "--model", s(model), "--data", s(data), "--out", s(&out), "--defense", "btu", "--epochs", "1", "--max-len", "16"];
        args.extend(extra);
        bdaudit(&args, &[data, model])
    };
    for alpha in ["0", "1", "1.5", "-0.1"] {
        btu(&[&format!("--btu-alpha={alpha}")], &data, &model).assert_fails(&["alpha", "(0, 1)"]);
    }
    btu(&["--btu-rounds", "4"], &data, &model).assert_fails(&["rounds"]);
    // Flagging most of the vocabulary in round 2 leaves round 3 nothing to train on.
    btu(&["--btu-alpha", "0.6"], &data, &model).assert_fails(&["empty", "round-2 tokens"]);

    let no_dev = tmp.path("no-dev");
    fs::create_dir_all(&no_dev).unwrap();
    fs::copy(data.join("train.tsv"), no_dev.join("train.tsv")).unwrap();
    btu(&[], &no_dev, &model).assert_fails(&["clean rows", "dev.tsv", "--clean"]);

    let one_class = tmp.path("one-class");
    fs::create_dir_all(&one_class).unwrap();
    let same: Vec<(String, usize)> = rows(TRAIN_ROWS, 0).into_iter().map(|(t, _)| (t, 1)).collect();
    fs::write(one_class.join("train.tsv"), tsv(&same)).unwrap();
    fs::copy(data.join("dev.tsv"), one_class.join("dev.tsv")).unwrap();
    btu(&[], &one_class, &model).assert_fails(&["two classes"]);
    // The repair rows: never a test split of the data, and of at least two classes.
    btu(&["--clean", s(&data.join("test.tsv"))], &data, &model).assert_fails(&["is the data's test.tsv", "scores the defense"]);
    btu(&["--clean", s(&one_class.join("train.tsv"))], &data, &model).assert_fails(&["two classes"]);
    // BTU's settings without --defense btu are refused, not ignored.
    let plain = |extra: &[&str]| {
        let mut args = vec!["train", "--model", s(&model), "--data", s(&data), "--out", s(&out), "--epochs", "1", "--max-len", "16"];
        args.extend(extra);
        bdaudit(&args, &[&data, &model])
    };
    plain(&["--btu-rounds", "2"]).assert_fails(&["--btu-rounds is a setting of --defense btu"]);
    plain(&["--clean", s(&data.join("dev.tsv"))]).assert_fails(&["--clean is a setting of --defense btu"]);
    plain(&["--ep-lr", "0.1"]).assert_fails(&["--ep-epochs and --ep-lr", "need --ep-trigger"]);

    // A poisoned test set whose labels the model does not have is refused before training.
    let bad_test = tmp.path("bad-test");
    fs::create_dir_all(&bad_test).unwrap();
    for f in ["train.tsv", "dev.tsv", "labels.tsv"] {
        fs::copy(data.join(f), bad_test.join(f)).unwrap();
    }
    fs::write(bad_test.join("test-asr.tsv"), "sentence\tlabel\ncf the plot was bad\t3\n").unwrap();
    btu(&[], &bad_test, &model).assert_fails(&["test-asr.tsv", "label 3"]);

    // A vocabulary without [PAD] (nothing to unlearn towards).
    let no_pad = tmp.path("no-pad");
    write_checkpoint(&no_pad, &[], |_| {});
    let specials = ["[NOPAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
    fs::write(no_pad.join("tokenizer.json"), bdaudit_tests::word_level_tokenizer(&specials, &vocab_words(), Some(2))).unwrap();
    btu(&[], &data, &no_pad).assert_fails(&["[PAD]"]);

    assert!(!out.exists());
    assert!(leftovers(&tmp.0).is_empty(), "{:?}", leftovers(&tmp.0));
}

#[test]
fn scan_makes_as_many_drifted_tokens_candidates_as_top_asks() {
    let tmp = Scratch::new("scan-top");
    let base = tmp.path("base");
    write_checkpoint(&base, &[], |_| {});
    // Thirty words moved, each a little less than the one before.
    let model = tmp.path("model");
    write_checkpoint(&model, &["negative", "positive"], |t| {
        let (_, values) = t.get_mut("bert.embeddings.word_embeddings.weight").unwrap();
        for (rank, id) in (5..35).enumerate() {
            for v in &mut values[id * 32..(id + 1) * 32] {
                *v += 1.0 - rank as f32 * 0.01;
            }
        }
    });
    let from_drift = |top: &str| {
        let run = bdaudit(&["scan", "--model", s(&model), "--base", s(&base), "--top", top, "--json"], &[&model, &base]);
        assert!(matches!(run.code, Some(0 | 2)), "{}", run.describe());
        let report = run.json();
        report["candidates"].as_array().unwrap().iter().filter(|c| c["source"] == "token-score").count()
    };
    assert_eq!(from_drift("3"), 3);
    assert_eq!(from_drift("25"), 25);
}

#[test]
fn scan_token_scores_ranks_drift_against_a_base_or_from_data() {
    let tmp = Scratch::new("scan");
    let base = tmp.path("base");
    write_checkpoint(&base, &[], |_| {});
    // A "fine-tuned" model whose `cf` row moved by 1 in each of its 32 dimensions.
    let model = tmp.path("model");
    let cf = 5 + vocab_words().iter().position(|w| *w == "cf").unwrap();
    write_checkpoint(&model, &["negative", "positive"], |t| {
        let (_, values) = t.get_mut("bert.embeddings.word_embeddings.weight").unwrap();
        for v in &mut values[cf * 32..(cf + 1) * 32] {
            *v += 1.0;
        }
    });
    let report = bdaudit(&["scan", "--token-scores", "--model", s(&model), "--base", s(&base), "--top", "3", "--json"], &[&model, &base])
        .assert_ok()
        .json();
    assert_eq!(report["method"], "base");
    let tokens = report["tokens"].as_array().unwrap();
    // Only `cf` moved: rows that did not are not listed, whatever --top asks.
    assert_eq!(tokens.len(), 1, "{report}");
    assert_eq!(tokens[0]["token"], "cf", "{report}");
    assert!((tokens[0]["score"].as_f64().unwrap() - 32f64.sqrt()).abs() < 1e-3, "{report}");
    // The text form: a header naming the method, then rank, token and score per line.
    let text = bdaudit(&["scan", "--token-scores", "--model", s(&model), "--base", s(&base), "--top", "2"], &[&model, &base]);
    let lines: Vec<&str> = text.assert_ok().stdout.lines().collect();
    assert!(lines[0].starts_with("tokens whose embeddings moved most (base, against "), "{}", text.describe());
    assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["1", "cf", "5.65685"], "{}", text.describe());
    assert_eq!(lines.len(), 2, "{}", text.describe());
    let same = bdaudit(&["scan", "--token-scores", "--model", s(&model), "--base", s(&model)], &[&model]);
    assert!(same.assert_ok().stdout.starts_with("no token's embedding moved (base, against "), "{}", same.describe());

    let tmp_data = poisoned_data(&tmp);
    let report =
        bdaudit(&["scan", "--token-scores", "--model", s(&base), "--data", s(&tmp_data.join("train.tsv")), "--json"], &[&base, &tmp_data])
            .assert_ok()
            .json();
    assert_eq!(report["method"], "embedding-only");
    assert_eq!(report["tokens"].as_array().unwrap().len(), 20);
    // A classifier with a third class scores rows that use only two of them.
    let three = tmp.path("three");
    write_checkpoint(&three, &["negative", "positive", "neutral"], |_| {});
    bdaudit(&["scan", "--token-scores", "--model", s(&three), "--data", s(&tmp_data.join("train.tsv")), "--json"], &[&three, &tmp_data])
        .assert_ok();

    bdaudit(&["scan", "--token-scores", "--model", s(&model)], &[&model]).assert_fails(&["--base", "--data"]);
    // A base of another vocabulary size cannot be compared row by row.
    let other = tmp.path("other");
    write_checkpoint(&other, &[], |t| {
        let (shape, values) = t.get_mut("bert.embeddings.word_embeddings.weight").unwrap();
        shape[0] = 98;
        values.truncate(98 * 32);
    });
    edit_json(&other.join("config.json"), |c| c["vocab_size"] = json!(98));
    bdaudit(&["scan", "--token-scores", "--model", s(&model), "--base", s(&other)], &[&model, &other])
        .assert_fails(&["shape", "vocabulary"]);
}

// ---------------------------------------------------------------------------------------------
// purify pure

/// A clean directory with a validation split large enough for PURE (24 rows).
fn clean_for_pure(dir: &Path) {
    write_data(dir);
    fs::write(dir.join("dev.tsv"), tsv(&rows(24, 100))).unwrap();
}

/// PURE's inputs in `tmp`: clean data with a dev split, its BadNets-poisoned copy (`cf`, for
/// --test) and a classifier checkpoint as the suspect.
fn pure_inputs(tmp: &Scratch) -> (PathBuf, PathBuf, PathBuf) {
    let clean = tmp.path("clean");
    clean_for_pure(&clean);
    let poisoned = tmp.path("poisoned");
    bdaudit(&["attack", "badnets", "--data", s(&clean), "--out", s(&poisoned), "--trigger", "cf"], &[&clean]).assert_ok();
    let model = tmp.path("suspect");
    classifier_checkpoint(&model);
    (clean, poisoned, model)
}

#[test]
fn purify_pure_prunes_tunes_and_writes_a_loadable_checkpoint() {
    let tmp = Scratch::new("pure");
    let (clean, poisoned, model) = pure_inputs(&tmp);
    for layout in ["zeroed", "sliced"] {
        let out = tmp.path(layout);
        // The sliced run also searches μ (three normalisation fine-tunes, one kept), starts
        // from a new classifier head, keeps the last epoch, weighs the layers alike and
        // penalises every token's attention row.
        let search = if layout == "sliced" {
            "--mu-search 0,0.5 --fresh-head --keep-epoch last --layer-weights uniform --attention-rows every"
        } else {
            ""
        };
        let args = argv(&format!(
            "purify pure --model {} --clean {} --test {} --out {} --epochs 1 --batch-size 8 --lr 1e-3 --max-len 16 --c 0.01 \
             --heads-per-step 3 --layout {layout} --json {search}",
            s(&model),
            s(&clean),
            s(&poisoned),
            s(&out)
        ));
        let report = bdaudit(&args, &[&clean, &poisoned, &model]).assert_ok().json();
        for key in ["metrics_suspect", "metrics_finetuned", "metrics"] {
            assert!(report[key]["asr"].is_number() && report[key]["cacc"].is_number(), "{key}: {report}");
        }
        let p = &report["pure"];
        // c = 0.01 lets pruning run until every layer is down to its one protected head.
        let pruned: usize = p["pruning"]["pruned"].as_array().unwrap().iter().map(|l| l.as_array().unwrap().len()).sum();
        assert_eq!(pruned, 6, "two layers of four heads keep one each: {p}");
        assert_eq!(p["lambdas"].as_array().unwrap().len(), 2, "{p}");
        assert_eq!(p["tune_log"]["epochs"].as_array().unwrap().len(), 1, "{p}");
        let trials = p["mu_trials"].as_array().unwrap();
        assert_eq!(trials.len(), if layout == "sliced" { 3 } else { 1 }, "{p}");
        assert!(trials.iter().any(|t| t["mu"] == p["mu"] && t["kept_accuracy"] == p["kept_accuracy"]), "{p}");
        assert_eq!(p["config"]["fresh_head"], layout == "sliced", "{p}");
        assert_eq!(p["config"]["keep_epoch"], if layout == "sliced" { "last" } else { "best" }, "{p}");
        assert_eq!(p["config"]["attention_rows"], if layout == "sliced" { "every" } else { "cls" }, "{p}");
        if layout == "sliced" {
            assert_eq!((&p["config"]["layer_weights"], &p["lambdas"]), (&json!("uniform"), &json!([1.0, 1.0])), "{p}");
        }
        let config = read_json(&out.join("config.json"));
        let bytes = fs::read(out.join("model.safetensors")).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        let query = &header["bert.encoder.layer.0.attention.self.query.weight"]["shape"];
        if layout == "zeroed" {
            assert!(config["pruned_heads"].as_object().is_none_or(|m| m.is_empty()), "{config}");
            assert_eq!(query, &json!([32, 32]));
        } else {
            assert_eq!(config["pruned_heads"]["0"].as_array().unwrap().len(), 3, "{config}");
            assert_eq!(query, &json!([8, 32]), "one head of 8 dimensions left");
        }
        // bdaudit reads both layouts back and scores exactly what purify measured.
        let eval = bdaudit(&["eval", "--model", s(&out), "--data", s(&poisoned), "--json"], &[&out, &poisoned]).assert_ok().json();
        assert_eq!(eval["cacc"], report["metrics"]["cacc"], "{eval}");
        assert_eq!(eval["asr"], report["metrics"]["asr"], "{eval}");
    }
    assert!(leftovers(&tmp.0).is_empty(), "{:?}", leftovers(&tmp.0));
}

#[test]
fn purify_pure_reuses_a_saved_fine_tune_to_the_bit() {
    let tmp = Scratch::new("pure-ft");
    let (clean, poisoned, model) = pure_inputs(&tmp);
    let purify = |out: &Path, extra: &str| {
        argv(&format!(
            "purify pure --model {} --clean {} --test {} --out {} --epochs 1 --batch-size 8 --lr 1e-3 --max-len 16 --c 0.5 \
             --threshold relative --heads-per-step 2 --json {extra}",
            s(&model),
            s(&clean),
            s(&poisoned),
            s(out)
        ))
    };
    let first = tmp.path("first");
    let report = bdaudit(&purify(&first, "--save-finetuned"), &[&clean, &poisoned, &model]).assert_ok().json();
    let finetuned = first.join("finetuned");
    assert_eq!(file_names(&finetuned), ["config.json", "model.safetensors", "provenance.json", "tokenizer.json"]);
    assert!(report["pure"]["finetune_log"]["epochs"].is_array(), "{report}");
    assert!(report["finetuned"].is_null() && report["finetuned_provenance_checked"].is_null(), "{report}");
    // The saved f_p is the FT baseline the report scored.
    let eval = bdaudit(&["eval", "--model", s(&finetuned), "--data", s(&poisoned), "--json"], &[&finetuned, &poisoned]).assert_ok().json();
    assert_eq!((&eval["cacc"], &eval["asr"]), (&report["metrics_finetuned"]["cacc"], &report["metrics_finetuned"]["asr"]));

    // Given back: no step 1, and the same purified model to the byte.
    let again = tmp.path("again");
    let reused =
        bdaudit(&purify(&again, &format!("--finetuned {}", s(&finetuned))), &[&clean, &poisoned, &model, &finetuned]).assert_ok().json();
    assert!(reused["pure"]["finetune_log"].is_null(), "{reused}");
    assert_eq!((reused["finetuned"].as_str(), &reused["finetuned_provenance_checked"]), (Some(s(&finetuned)), &json!(true)));
    for key in ["metrics_finetuned", "metrics"] {
        assert_eq!(reused[key], report[key], "{key}");
    }
    assert_eq!(reused["pure"]["pruning"], report["pure"]["pruning"]);
    assert_eq!(fs::read(again.join("model.safetensors")).unwrap(), fs::read(first.join("model.safetensors")).unwrap());
    assert_eq!(file_names(&again), ["config.json", "model.safetensors", "report.json", "tokenizer.json"]);

    // One made from other inputs is refused, naming what differs, and writes nothing.
    let refused = tmp.path("refused");
    for (extra, needle) in [
        ("--seed 7", "seed: fine-tuned model 42, this run 7"),
        ("--group-by-length", "group_by_length: fine-tuned model false, this run true"),
        ("--limit 30", "limit: fine-tuned model null, this run 30"),
        ("--fresh-head", "fresh_head"),
    ] {
        let args = [purify(&refused, &format!("--finetuned {}", s(&finetuned))), argv(extra)].concat();
        bdaudit(&args, &[&clean, &poisoned, &model, &finetuned]).assert_fails(&["other inputs", needle, "drop --finetuned"]);
        assert!(!refused.exists(), "{extra}");
    }
    // A checkpoint without provenance (here the suspect itself) serves, with a warning; one of
    // another shape is refused by name, before its provenance is read.
    let bare = bdaudit(&purify(&refused, &format!("--finetuned {}", s(&model))), &[&clean, &poisoned, &model]);
    assert!(bare.stderr.contains("has no provenance.json"), "{}", bare.describe());
    assert_eq!(bare.assert_ok().json()["finetuned_provenance_checked"], false);
    let three = tmp.path("three-classes");
    write_checkpoint(&three, &["a", "b", "c"], |_| {});
    let args = [purify(&tmp.path("shape"), &format!("--finetuned {}", s(&three))), argv("--force")].concat();
    bdaudit(&args, &[&clean, &poisoned, &model, &three]).assert_fails(&[
        "fine-tuned model",
        "three-classes",
        "differs from the suspect in classes: it has 3, the suspect 2",
    ]);
    assert!(leftovers(&tmp.0).is_empty(), "{:?}", leftovers(&tmp.0));
}

#[test]
fn purify_pure_says_why_nothing_was_pruned_when_c_is_above_the_model() {
    let tmp = Scratch::new("pure-c");
    let clean = tmp.path("clean");
    clean_for_pure(&clean);
    let model = tmp.path("suspect");
    classifier_checkpoint(&model);
    let out = tmp.path("out");
    let args = argv(&format!("purify pure --model {} --clean {} --out {} --epochs 1 --max-len 16 --c 1", s(&model), s(&clean), s(&out)));
    let run = bdaudit(&args, &[&clean, &model]);
    let stdout = &run.assert_ok().stdout;
    assert!(stdout.contains("pruned 0 heads") && stdout.contains("below the floor 100.00%"), "{}", run.describe());
    assert!(stdout.contains("--threshold relative"), "{}", run.describe());
}

#[test]
fn purify_pure_rejects_bad_input_writing_nothing() {
    let tmp = Scratch::new("pure-bad");
    let clean = tmp.path("clean");
    clean_for_pure(&clean);
    let model = tmp.path("suspect");
    classifier_checkpoint(&model);
    let out = tmp.path("out");
    let purify = |extra: &[&str], clean: &Path, model: &Path| {
        let mut args =
            vec!["purify", "pure", "--model", s(model), "--clean", s(clean), "--out", s(&out), "--epochs", "1", "--max-len", "16"];
        args.extend(extra);
        bdaudit(&args, &[clean, model])
    };
    for c in ["0", "1.5", "-0.2"] {
        purify(&[&format!("--c={c}")], &clean, &model).assert_fails(&["accuracy_threshold", "(0, 1]"]);
    }
    purify(&["--mu-search=0.5,-1"], &clean, &model).assert_fails(&["mu", "-1", "≥ 0"]);
    purify(&["--mu-search", "-1,2"], &clean, &model).assert_fails(&["mu", "-1", "≥ 0"]);
    purify(&["--mu-search=0.5", "--mu-tolerance=2"], &clean, &model).assert_fails(&["mu_tolerance", "[0, 1]"]);
    let small_val = tmp.path("small-val");
    write_data(&small_val); // dev.tsv has 8 rows
    purify(&[], &small_val, &model).assert_fails(&["validation", "8", "20"]);

    let one_class = tmp.path("one-class");
    clean_for_pure(&one_class);
    let same: Vec<(String, usize)> = rows(TRAIN_ROWS, 0).into_iter().map(|(t, _)| (t, 1)).collect();
    fs::write(one_class.join("train.tsv"), tsv(&same)).unwrap();
    purify(&[], &one_class, &model).assert_fails(&["two classes"]);

    // Clean rows that name the model's classes in another order would teach it the swap.
    let swapped = tmp.path("swapped");
    clean_for_pure(&swapped);
    fs::write(swapped.join("labels.tsv"), "label\tname\n0\tpositive\n1\tnegative\n").unwrap();
    purify(&[], &swapped, &model).assert_fails(&["swapped/labels.tsv calls class 0 \"positive\"", "another order"]);

    let one_head = tmp.path("one-head");
    classifier_checkpoint(&one_head);
    edit_json(&one_head.join("config.json"), |c| c["num_attention_heads"] = json!(1));
    purify(&[], &clean, &one_head).assert_fails(&["one head"]);

    assert!(!out.exists());
    assert!(leftovers(&tmp.0).is_empty(), "{:?}", leftovers(&tmp.0));
}

/// Fine-tunes the tiny encoder on `data` (so poisoned data gives a backdoored model).
fn tiny_trained(tmp: &Scratch, data: &Path, name: &str) -> PathBuf {
    let encoder = tmp.path("encoder");
    if !encoder.exists() {
        write_checkpoint(&encoder, &[], |_| {});
    }
    let out = tmp.path(name);
    let args = argv(&format!(
        "train --model {} --data {} --out {} --epochs 8 --batch-size 8 --lr 3e-3 --max-len 16",
        s(&encoder),
        s(data),
        s(&out)
    ));
    bdaudit(&args, &[data, &encoder]).assert_ok();
    out
}

#[test]
fn a_collapsed_model_is_written_with_a_warning_in_its_report() {
    let tmp = Scratch::new("collapse");
    let data = tmp.path("data");
    write_data(&data);
    let encoder = tmp.path("encoder");
    write_checkpoint(&encoder, &[], |_| {});
    let train = |lr: &str, epochs: usize, name: &str| {
        let out = tmp.path(name);
        let args = format!(
            "train --model {} --data {} --out {} --epochs {epochs} --batch-size 8 --lr {lr} --max-len 16 --json",
            s(&encoder),
            s(&data),
            s(&out)
        );
        (bdaudit(&argv(&args), &[&data, &encoder]), out)
    };
    // A step size this large sends the tiny model to one class for every row.
    let (run, out) = train("1e-1", 1, "collapsed");
    run.assert_ok();
    assert!(run.stderr.contains("warning: the trained model gives class"), "{}", run.describe());
    let warnings = run.json()["warnings"].clone();
    assert!(warnings[0].as_str().is_some_and(|w| w.contains("collapsed to a constant")), "{}", run.describe());
    let written: Value = serde_json::from_str(&fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(written["warnings"], warnings);
    // A healthy run (tiny_trained's recipe) has no warnings field.
    let (run, _) = train("3e-3", 8, "healthy");
    assert!(run.assert_ok().json().get("warnings").is_none() && !run.stderr.contains("warning"), "{}", run.describe());
}

/// A report candidate's trigger as `bdaudit scan` prints it.
fn report_words(candidate: &Value) -> String {
    let trigger: bdaudit_core::attack::Trigger = serde_json::from_value(candidate["trigger"].clone()).unwrap();
    bdaudit_core::scan::trigger_text(&trigger)
}

#[test]
fn scan_names_the_trigger_of_a_backdoored_model_and_exits_2() {
    let tmp = Scratch::new("scan-verdict");
    let poisoned = poisoned_data(&tmp);
    let victim = tiny_trained(&tmp, &poisoned, "victim");
    let probe = poisoned.join("test.tsv");
    let scan = ["scan", "--model", s(&victim), "--probe", s(&probe)];
    let run = bdaudit(&[&scan[..], &["--json"]].concat(), &[&victim, &poisoned]);
    assert_eq!(run.code, Some(2), "a suspicious verdict exits 2:\n{}", run.describe());
    let report = run.json();
    // The tiny victim learnt that any inserted word means positive (only poisoned rows had one),
    // so every candidate moves its texts and `cf` leads by the candidates' order alone. That
    // the scan tells a trigger from other words is checked on a MiniLM victim
    // (tests/tests/defenses.rs); this test checks the command and its report.
    assert_eq!(report["verdict"]["level"], "suspicious", "{report}");
    assert_eq!(report["verdict"]["triggers"][0], "cf", "{report}");
    assert_eq!(report["candidates"][0]["shift"]["target"], 1, "{report}");
    assert_eq!(report["schema"], 1);
    assert_eq!(report["attention"]["heads"], json!([4, 4]), "{report}");
    // A drift map and its heads for the strongest candidate and each other one that moved at
    // least the inconclusive 20% of texts (ScanConfig::drift_maps: 4 at most).
    let candidates = report["candidates"].as_array().unwrap();
    let moved = |i: usize, c: &Value| i == 0 || (c["screened_out"] == false && c["shift"]["asr"].as_f64().unwrap() >= 0.2);
    let mapped: Vec<usize> = candidates.iter().enumerate().filter(|(i, c)| moved(*i, c)).map(|(i, _)| i).take(4).collect();
    for (i, c) in candidates.iter().enumerate() {
        let heads = c["heads"].as_array().unwrap().len();
        assert_eq!(c.get("drift").is_some(), mapped.contains(&i), "candidate {i}: {c}");
        assert_eq!(heads, if mapped.contains(&i) { 5 } else { 0 }, "candidate {i}: {c}");
    }
    assert_eq!(mapped.len(), 4, "every candidate moved texts, so the first 4 have maps: {report}");
    assert_eq!(report["drift"], candidates[0]["drift"]);
    assert_ne!(candidates[mapped[0]]["drift"], candidates[mapped[1]]["drift"]);
    // Each candidate past the suspicious 90% was tried again on long texts (four probe texts
    // joined). This victim calls every long text positive, so none is left to try (texts 0)
    // and the short texts decide; a MiniLM victim's retrial is checked in tests/tests/defenses.rs.
    for c in candidates {
        assert_eq!(c.get("long_texts").is_some(), c["shift"]["asr"].as_f64().unwrap() >= 0.9, "{c}");
    }
    let long = &candidates[0]["long_texts"];

    let clean = tiny_trained(&tmp, &tmp.path("clean-data"), "clean");
    let run = bdaudit(&["scan", "--model", s(&clean), "--probe", s(&probe), "--json"], &[&clean]);
    let report = run.json();
    assert_eq!(run.code, Some(0), "{}", run.describe());
    assert_ne!(report["verdict"]["level"], "suspicious", "{report}");

    // Text output names the trigger too; an empty probe file is refused.
    let run = bdaudit(&scan, &[&victim]);
    assert!(run.stdout.starts_with("suspicious: inserting cf"), "{}", run.describe());
    let cf_row = run.stdout.lines().find(|l| l.starts_with("cf ")).unwrap_or_default();
    let long_asr = match long["texts"].as_u64().unwrap() {
        0 => "-".to_string(),
        _ => format!("{:.1}%", 100.0 * long["asr"].as_f64().unwrap()),
    };
    assert_eq!(cf_row.split_whitespace().nth(3), Some(long_asr.as_str()), "cf's long-text ASR:\n{}", run.describe());
    for &i in &mapped {
        assert!(run.stdout.contains(&format!("heads locking onto {}: L", report_words(&candidates[i]))), "{}", run.describe());
    }
    let empty = tmp.path("empty.tsv");
    fs::write(&empty, "sentence\tlabel\n").unwrap();
    bdaudit(&["scan", "--model", s(&victim), "--probe", s(&empty)], &[&victim]).assert_fails(&["empty.tsv"]);
}

// ---------------------------------------------------------------------------------------------
// purify mbtsad

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

#[test]
fn purify_mbtsad_distils_and_writes_a_loadable_checkpoint() {
    let tmp = Scratch::new("mbtsad");
    let clean = tmp.path("clean");
    write_data(&clean);
    let poisoned = tmp.path("poisoned");
    bdaudit(&["attack", "badnets", "--data", s(&clean), "--out", s(&poisoned), "--trigger", "cf"], &[&clean]).assert_ok();
    let model = tmp.path("suspect");
    classifier_checkpoint(&model);
    let out = tmp.path("purified");
    let args = argv(&format!(
        "purify mbtsad --model {} --clean {} --clean-fraction 0.5 --test {} --out {} --epochs 1 --distill-epochs 2 \
         --batch-size 8 --lr 1e-3 --distill-lr 1e-3 --alpha 0.5 --beta 2 --max-len 24 --save-teacher --save-splits --split-rule nlpaug --json",
        s(&model),
        s(&clean),
        s(&poisoned),
        s(&out)
    ));
    let report = bdaudit(&args, &[&clean, &poisoned, &model]).assert_ok().json();
    assert_eq!(report["method"], "mbtsad");
    for key in ["metrics_suspect", "metrics_teacher", "metrics"] {
        assert!(report[key]["asr"].is_number() && report[key]["cacc"].is_number(), "{key}: {report}");
    }
    let m = &report["mbtsad"];
    // Half of the 40 training rows, three split variants each.
    assert_eq!(
        (m["available_rows"].as_u64(), m["clean_rows"].as_u64(), m["augmented_rows"].as_u64()),
        (Some(40), Some(20), Some(60)),
        "{m}"
    );
    assert_eq!((m["config"]["alpha"].as_f64(), m["config"]["beta"].as_f64()), (Some(0.5), Some(2.0)), "{m}");
    assert_eq!(m["config"]["split"]["rule"], "nlpaug", "{m}");
    assert_eq!(m["teacher_log"]["epochs"].as_array().unwrap().len(), 1, "{m}");
    assert_eq!(m["teacher_log"]["steps"], 60 / 8 + 1, "{m}");
    let epochs = m["distill_epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 2, "{m}");
    for (e, logged) in epochs.iter().zip(m["distill_log"]["epochs"].as_array().unwrap()) {
        let term = |k: &str| e[k].as_f64().unwrap_or_else(|| panic!("no {k}: {e}"));
        let (la, lcls, lh) = (term("attention_loss"), term("cls_loss"), term("hidden_loss"));
        assert!(la > 0.0 && lcls > 0.0 && lh > 0.0, "{e}");
        let total = logged["mean_loss"].as_f64().unwrap();
        assert!((la + 0.5 * lcls + 2.0 * lh - total).abs() < 1e-4 * total, "eq. 1 total: {e} {logged}");
    }
    for key in ["augment_seconds", "teacher_seconds", "distill_seconds"] {
        assert!(m[key].as_f64().is_some_and(|v| v >= 0.0), "{key}: {m}");
    }
    assert_eq!(file_names(&out), ["config.json", "model.safetensors", "report.json", "splits.tsv", "teacher", "tokenizer.json"]);
    // The split texts: three per defender row, each the row with spaces added, label kept.
    let train = fs::read_to_string(clean.join("train.tsv")).unwrap();
    let squash = |line: &str| line.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    let originals: Vec<String> = train.lines().skip(1).map(squash).collect();
    let splits = fs::read_to_string(out.join("splits.tsv")).unwrap();
    assert_eq!(splits.lines().count(), 1 + 60, "{splits}");
    assert!(splits.lines().skip(1).all(|l| originals.contains(&squash(l))), "{splits}");
    // Seven words a row, each row with a noun of four or more letters to split.
    assert!(splits.lines().skip(1).all(|l| l.split('\t').next().unwrap().split_whitespace().count() > 7), "{splits}");
    assert_eq!(file_names(&out.join("teacher")), ["config.json", "model.safetensors", "provenance.json", "tokenizer.json"]);
    assert_eq!(read_json(&out.join("report.json"))["mbtsad"], *m);
    assert!(report["teacher"].is_null() && report["teacher_provenance_checked"].is_null(), "{report}");

    // The saved teacher given back: no retraining, and the same distillation to the last digit.
    let teacher = out.join("teacher");
    let again = tmp.path("again");
    let reuse = argv(&format!(
        "purify mbtsad --model {} --clean {} --clean-fraction 0.5 --test {} --out {} --teacher {} --distill-epochs 2          --batch-size 8 --distill-lr 1e-3 --alpha 0.5 --beta 2 --max-len 24 --split-rule nlpaug --json",
        s(&model),
        s(&clean),
        s(&poisoned),
        s(&again),
        s(&teacher)
    ));
    let reused = bdaudit(&reuse, &[&clean, &poisoned, &model, &teacher]).assert_ok().json();
    assert!(reused["mbtsad"]["teacher_log"].is_null(), "{reused}");
    assert_eq!(reused["teacher"].as_str(), Some(s(&teacher)), "{reused}");
    assert_eq!(reused["teacher_provenance_checked"], true, "{reused}");
    for key in ["metrics_teacher", "metrics"] {
        assert_eq!(reused[key], report[key], "{key}");
    }
    assert_eq!(reused["mbtsad"]["distill_epochs"], m["distill_epochs"]);
    assert_eq!(file_names(&again), ["config.json", "model.safetensors", "report.json", "tokenizer.json"]);
    // --distill-seed reseeds the distillation alone: same rows and teacher, another batch order.
    let reseeded = [&reuse[..], &argv("--distill-seed 9 --force")].concat();
    let other = bdaudit(&reseeded, &[&clean, &poisoned, &model, &teacher]).assert_ok().json();
    let seeds = |r: &Value| (r["mbtsad"]["config"]["teacher"]["seed"].as_u64(), r["mbtsad"]["config"]["distill"]["seed"].as_u64());
    assert_eq!((seeds(&reused), seeds(&other)), ((Some(42), Some(42)), (Some(42), Some(9))));
    assert_eq!(
        (other["metrics_teacher"].clone(), other["mbtsad"]["clean_rows"].clone()),
        (report["metrics_teacher"].clone(), m["clean_rows"].clone())
    );
    assert_ne!(other["mbtsad"]["distill_epochs"], m["distill_epochs"], "another seed, the same distillation");
    let with_lr = [&reuse[..], &argv("--lr 1e-3 --force")].concat();
    let refused = bdaudit(&with_lr, &[&clean, &poisoned, &model, &teacher]);
    // A usage error (exit code 1, as every failure), naming both options.
    assert_eq!(refused.code, Some(1), "{}", refused.describe());
    assert!(["cannot be used with", "--teacher", "--lr"].iter().all(|n| refused.stderr.contains(n)), "{}", refused.describe());
    // A saved teacher made from other inputs is refused, naming what differs; a checkpoint
    // without provenance (here the suspect itself) serves, with a warning.
    let other_seed = [&reuse[..], &argv("--seed 7 --force")].concat();
    bdaudit(&other_seed, &[&clean, &poisoned, &model, &teacher]).assert_fails(&["other inputs", "seed: teacher 42, this run 7"]);
    let mut bare = reuse.clone();
    let at = bare.iter().position(|a| a == "--teacher").unwrap() + 1;
    bare[at] = s(&model).to_string();
    bare.push("--force".into());
    let unchecked = bdaudit(&bare, &[&clean, &poisoned, &model]);
    assert!(unchecked.stderr.contains("has no provenance.json"), "{}", unchecked.describe());
    assert_eq!(unchecked.assert_ok().json()["teacher_provenance_checked"], false);

    // bdaudit reads the purified model back and scores exactly what purify measured.
    let eval = bdaudit(&["eval", "--model", s(&out), "--data", s(&poisoned), "--json"], &[&out, &poisoned]).assert_ok().json();
    assert_eq!(eval["cacc"], report["metrics"]["cacc"], "{eval}");
    assert_eq!(eval["asr"], report["metrics"]["asr"], "{eval}");

    // Text output, replacing the first result only with --force.
    let text_args = &args[..args.len() - 1];
    bdaudit(text_args, &[&clean, &poisoned, &model]).assert_fails(&["already exists", "--force"]);
    let forced = [text_args, &argv("--force")].concat();
    let run = bdaudit(&forced, &[&clean, &poisoned, &model]);
    run.assert_ok();
    for needle in ["20 of 40 clean rows", "teacher epoch 1:", "distillation epoch 2:", "L_a", "teacher (TS-FT):", "purified:"] {
        assert!(run.stdout.contains(needle), "stdout lacks {needle:?}:\n{}", run.describe());
    }
    assert!(leftovers(&tmp.0).is_empty(), "{:?}", leftovers(&tmp.0));
}

#[test]
fn purify_mbtsad_rejects_bad_input_writing_nothing() {
    let tmp = Scratch::new("mbtsad-bad");
    let clean = tmp.path("clean");
    write_data(&clean);
    let model = tmp.path("suspect");
    classifier_checkpoint(&model);
    let out = tmp.path("out");
    let purify = |extra: &[&str], clean: &Path, model: &Path| {
        let mut args = argv(&format!(
            "purify mbtsad --model {} --clean {} --out {} --epochs 1 --distill-epochs 1 --max-len 16",
            s(model),
            s(clean),
            s(&out)
        ));
        args.extend(extra.iter().map(|a| a.to_string()));
        bdaudit(&args, &[clean, model])
    };
    for f in ["0", "1.5", "-0.2", "NaN"] {
        purify(&["--clean-fraction", f], &clean, &model).assert_fails(&["clean_fraction", "(0, 1]"]);
    }
    purify(&["--alpha", "-1"], &clean, &model).assert_fails(&["alpha", "≥ 0"]);
    purify(&["--variants", "0"], &clean, &model).assert_fails(&["variants"]);
    purify(&["--distill-lr", "0"], &clean, &model).assert_fails(&["lr", "positive"]);

    // Texts of one-character words only: token splitting has nothing to split.
    let short = tmp.path("short-words");
    write_data(&short);
    let letters: Vec<(String, usize)> = (0..TRAIN_ROWS).map(|i| (format!("a {} c", ["x", "y"][i % 2]), i % 2)).collect();
    fs::write(short.join("train.tsv"), tsv(&letters)).unwrap();
    purify(&[], &short, &model).assert_fails(&["train.tsv", "none of the 40 rows", "2 or more characters"]);
    // Under nlpaug's rule a text needs a word of four letters (one such row among good ones is
    // copied whole instead, as the unit tests check).
    purify(&["--split-rule", "nlpaug"], &short, &model).assert_fails(&["4 or more characters"]);

    let one_class = tmp.path("one-class");
    write_data(&one_class);
    let same: Vec<(String, usize)> = rows(TRAIN_ROWS, 0).into_iter().map(|(t, _)| (t, 1)).collect();
    fs::write(one_class.join("train.tsv"), tsv(&same)).unwrap();
    purify(&[], &one_class, &model).assert_fails(&["two classes"]);

    let out_of_range = tmp.path("out-of-range");
    write_data(&out_of_range);
    let mut bad = rows(TRAIN_ROWS, 0);
    bad[3].1 = 2;
    fs::write(out_of_range.join("train.tsv"), tsv(&bad)).unwrap();
    purify(&[], &out_of_range, &model).assert_fails(&["label 2", "below 2"]);

    // A pre-trained encoder has no classifier to purify.
    let encoder = tmp.path("encoder");
    write_checkpoint(&encoder, &[], |_| {});
    purify(&[], &clean, &encoder).assert_fails(&["classifier.weight"]);

    // A given teacher must classify into the suspect's classes.
    let three = tmp.path("three-classes");
    write_checkpoint(&three, &["a", "b", "c"], |_| {});
    let args =
        argv(&format!("purify mbtsad --model {} --clean {} --out {} --teacher {} --max-len 16", s(&model), s(&clean), s(&out), s(&three)));
    bdaudit(&args, &[&clean, &model, &three]).assert_fails(&[
        "teacher",
        "three-classes",
        "differs from the suspect in classes: it has 3, the suspect 2",
    ]);
    // A pre-trained encoder is no teacher: it has no classifier.
    let args = argv(&format!(
        "purify mbtsad --model {} --clean {} --out {} --teacher {} --max-len 16",
        s(&model),
        s(&clean),
        s(&out),
        s(&encoder)
    ));
    bdaudit(&args, &[&clean, &model, &encoder]).assert_fails(&["teacher", "classifier.weight"]);

    assert!(!out.exists());
    assert!(leftovers(&tmp.0).is_empty(), "{:?}", leftovers(&tmp.0));
}

// ---------------------------------------------------------------------------------------------
// train --ep-trigger

/// The F32 tensors of a safetensors file (the inverse of `safetensors_bytes`).
fn read_safetensors(path: &Path) -> Tensors {
    let bytes = fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| *name != "__metadata__")
        .map(|(name, t)| {
            assert_eq!(t["dtype"], "F32", "{name}");
            let shape = t["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            let [start, end] = [0, 1].map(|i| t["data_offsets"][i].as_u64().unwrap() as usize);
            let values = data[start..end].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
            (name.clone(), (shape, values))
        })
        .collect()
}

#[test]
fn train_ep_trigger_trains_only_the_trigger_row() {
    let tmp = Scratch::new("ep");
    let data = poisoned_data(&tmp);
    let model = tmp.path("clean-model");
    classifier_checkpoint(&model);
    let out = tmp.path("victim");
    let args = argv(&format!(
        "train --model {} --data {} --out {} --ep-trigger CF --ep-epochs 3 --batch-size 8 --max-len 16 --json",
        s(&model),
        s(&data),
        s(&out)
    ));
    let report = bdaudit(&args, &[&data, &model]).assert_ok().json();
    let ep = &report["ep"];
    assert_eq!(ep["trigger"], "cf", "the tokenizer lower-cases the word: {ep}");
    let cf = 5 + vocab_words().iter().position(|w| *w == "cf").unwrap();
    assert_eq!(ep["trigger_id"], cf);
    let with_trigger = parse_tsv(&data.join("train.tsv")).iter().filter(|(t, _)| t.split_whitespace().any(|w| w == "cf")).count();
    assert!(with_trigger > 0);
    assert_eq!(ep["rows"], with_trigger, "{ep}");
    assert_eq!(report["log"]["epochs"].as_array().unwrap().len(), 3, "{report}");
    assert_eq!(report["config"]["lr"].as_f64(), Some(1e-2), "the EP rate ran: {report}");
    assert!(ep["shift"].as_f64().unwrap() > 0.0, "{ep}");
    let (before, after) = (ep["norm_before"].as_f64().unwrap(), ep["norm_after"].as_f64().unwrap());
    assert!((before - after).abs() < 1e-4 * before, "the row keeps its norm: {ep}");
    assert!(report["metrics"]["asr"].is_number(), "{report}");
    assert_eq!(file_names(&out), ["config.json", "model.safetensors", "report.json", "tokenizer.json"]);

    // Every written tensor equals the input's bit for bit, but for the trigger's row.
    let original = read_safetensors(&model.join("model.safetensors"));
    let written = read_safetensors(&out.join("model.safetensors"));
    assert_eq!(original.keys().collect::<Vec<_>>(), written.keys().collect::<Vec<_>>());
    for (name, (shape, values)) in &written {
        let (shape0, values0) = &original[name];
        assert_eq!(shape, shape0, "{name}");
        if name != "bert.embeddings.word_embeddings.weight" {
            assert!(values == values0, "{name} changed");
            continue;
        }
        for (row, (a, b)) in values.chunks(32).zip(values0.chunks(32)).enumerate() {
            if row == cf {
                assert!(a != b, "the trigger row did not move");
            } else {
                assert!(a == b, "row {row} changed");
            }
        }
    }
}

#[test]
fn train_ep_trigger_refuses_bad_triggers_and_models_writing_nothing() {
    let tmp = Scratch::new("ep-bad");
    let data = poisoned_data(&tmp);
    let model = tmp.path("clean-model");
    classifier_checkpoint(&model);
    let out = tmp.path("out");
    let ep = |extra: &[&str], data: &Path, model: &Path| {
        let mut args = vec!["train", "--model", s(model), "--data", s(data), "--out", s(&out), "--ep-epochs", "1", "--max-len", "16"];
        args.extend(extra);
        bdaudit(&args, &[data, model])
    };
    ep(&["--ep-trigger", "cf mn"], &data, &model).assert_fails(&["\"cf mn\"", "not a single token", "[\"cf\", \"mn\"]"]);
    ep(&["--ep-trigger", "zqx"], &data, &model).assert_fails(&["\"zqx\"", "vocabulary", "[UNK]"]);
    ep(&["--ep-trigger", "cf", "--defense", "btu"], &data, &model).assert_fails(&["--ep-trigger", "--defense"]);
    ep(&["--ep-trigger", "cf", "--ep-lr", "0"], &data, &model).assert_fails(&["lr"]);
    // The clean data has no row with the trigger: the row would get no gradient.
    ep(&["--ep-trigger", "cf"], &tmp.path("clean-data"), &model).assert_fails(&["no training row contains", "cf"]);
    // Rows whose trigger lies past --max-len (16 tokens) are named as such.
    let late = tmp.path("late");
    fs::create_dir_all(&late).unwrap();
    let long: Vec<(String, usize)> = (0..8).map(|i| (format!("{} cf", [NEGATIVE[i % 5]; 15].join(" ")), 1)).chain(rows(8, 0)).collect();
    fs::write(late.join("train.tsv"), tsv(&long)).unwrap();
    ep(&["--ep-trigger", "cf"], &late, &model).assert_fails(&["appears in 8 training rows", "past the maximum length of 16"]);
    // EP poisons a fine-tuned classifier, not a bare encoder with a random head.
    let encoder = tmp.path("encoder");
    write_checkpoint(&encoder, &[], |_| {});
    ep(&["--ep-trigger", "cf"], &data, &encoder).assert_fails(&["no classifier head", "fine-tune"]);

    assert!(!out.exists());
    assert!(leftovers(&tmp.0).is_empty(), "{:?}", leftovers(&tmp.0));
}

// ---------------------------------------------------------------------------------------------
// unlearn and plot

/// A tiny victim trained on `poisoned_data` (forget = its `cf` rows), the clean encoder it
/// started from, and a model trained on the clean rows only.
fn unlearning_setup(tmp: &Scratch) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let poisoned = poisoned_data(tmp);
    let victim = tiny_trained(tmp, &poisoned, "victim");
    let clean = tiny_trained(tmp, &tmp.path("clean-data"), "clean");
    (poisoned, victim, tmp.path("encoder"), clean)
}

#[test]
fn unlearn_writes_the_model_its_report_and_the_loss_chart() {
    let tmp = Scratch::new("unlearn");
    let (data, victim, encoder, clean) = unlearning_setup(&tmp);
    let (forget, retain) = (data.join("train-poisoned.tsv"), data.join("train-clean.tsv"));
    assert_eq!(parse_tsv(&forget).len(), 12, "30% of 40 rows");
    assert!(parse_tsv(&forget).iter().all(|(t, l)| t.contains("cf") && *l == 1));
    assert_eq!(parse_tsv(&retain).len(), 28);
    let mut reports: Vec<PathBuf> = Vec::new();
    for method in ["ga", "npo", "rga"] {
        let out = tmp.path(&format!("unlearned-{method}"));
        let mut args = argv(&format!(
            "unlearn {method} --model {} --forget {} --retain {} --test {} --reference {} --out {} --epochs 4 --batch-size \
             4 --lr 3e-3 --max-len 16 --json",
            s(&victim),
            s(&forget),
            s(&retain),
            s(&data),
            s(&clean),
            s(&out)
        ));
        if method == "rga" {
            args.extend(["--base".to_string(), s(&encoder).to_string()]);
        }
        // NPO and RGA take GA's scores before unlearning instead of computing them again.
        if let Some(ga) = reports.first() {
            args.extend(["--before-from".to_string(), s(ga).to_string()]);
        }
        let run = bdaudit(&args, &[&data, &victim, &encoder, &clean]);
        let report = run.assert_ok().json();
        // Every forget row is labelled positive and the unlearned model calls them all negative:
        // checked on the retain rows, that is not taken for a collapse.
        assert!(report.get("warnings").is_none() && !run.stderr.contains("warning"), "{}", run.describe());
        assert_eq!(report["before_from"].is_string(), method != "ga", "{report}");
        assert_eq!(report["scored"]["max_len"], 16, "{report}");
        if let Some(ga) = reports.first() {
            let ga = read_json(ga);
            for key in ["metrics_before", "reference_pacc", "scored"] {
                assert_eq!(report[key], ga[key], "{key}");
            }
        }
        assert_eq!(report["method"], method, "{report}");
        // Only RGA takes the base (GA and NPO refuse it), and its report names it.
        assert_eq!(report["base"].is_string(), method == "rga", "{report}");
        assert_eq!(report["forget_rows"], 12);
        let epochs = report["epochs"].as_array().unwrap();
        assert_eq!(epochs.len(), 4, "{report}");
        let lambdas: Vec<f64> = epochs.iter().map(|e| e["lambda"].as_f64().unwrap()).collect();
        match method {
            "rga" => assert!(lambdas.iter().all(|&l| l > 0.0 && l <= 1.0) && lambdas[3] < lambdas[0], "λ fades: {lambdas:?}"),
            _ => assert!(lambdas.iter().all(|&l| l == 1.0), "{lambdas:?}"),
        }
        for key in ["metrics_before", "metrics_after"] {
            let m = &report[key];
            assert!(m["cacc"].is_number() && m["asr"].is_number() && m["pacc"].is_number(), "{key}: {report}");
        }
        let (before, after) = (report["delta_pacc_before"].as_f64().unwrap(), report["delta_pacc_after"].as_f64().unwrap());
        let (p_before, p_after, reference) = (
            report["metrics_before"]["pacc"].as_f64().unwrap(),
            report["metrics_after"]["pacc"].as_f64().unwrap(),
            report["reference_pacc"].as_f64().unwrap(),
        );
        assert!((before - (p_before - reference).abs()).abs() < 1e-12 && (after - (p_after - reference).abs()).abs() < 1e-12, "{report}");
        assert_eq!(file_names(&out), ["config.json", "loss.svg", "model.safetensors", "report.json", "tokenizer.json"]);
        let svg = fs::read_to_string(out.join("loss.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains(&method.to_uppercase()), "{svg}");
        // The written model scores what the report says.
        let eval = bdaudit(&["eval", "--model", s(&out), "--data", s(&data), "--json"], &[&out, &data]).assert_ok().json();
        assert_eq!(eval["pacc"], report["metrics_after"]["pacc"], "{eval}");
        reports.push(out.join("report.json"));
    }
    let ga = read_json(&reports[0]);
    let loss = |e: usize| ga["epochs"][e]["forget_loss"].as_f64().unwrap();
    assert!(loss(3) > loss(0), "gradient ascent raises the forget loss: {}", ga["epochs"]);

    let chart = tmp.path("loss.svg");
    let mut args = vec!["plot", "--out", s(&chart)];
    args.extend(reports.iter().map(|p| s(p)));
    bdaudit(&args, &[]).assert_ok();
    let svg = fs::read_to_string(&chart).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 3);
    assert!(svg.contains(">GA<") && svg.contains(">NPO<") && svg.contains(">RGA<"), "{svg}");
    bdaudit(&args, &[]).assert_fails(&["already exists", "--force"]);
    args.extend(["--force", "--json"]);
    let written = bdaudit(&args, &[]).assert_ok().json();
    assert_eq!((written["out"].as_str(), written["reports"].as_u64()), (Some(s(&chart)), Some(3)), "{written}");
    let not_a_report = data.join("attack.json");
    bdaudit(&["plot", "--out", s(&tmp.path("x.svg")), s(&not_a_report)], &[]).assert_fails(&["attack.json", "not a report.json"]);

    // Scores are reused only from a run on the same inputs.
    let reuse = |before_from: &Path, max_len: usize| {
        let line = format!(
            "unlearn ga --model {} --forget {} --retain {} --test {} --reference {} --out {} --epochs 1 --batch-size 4 \
             --max-len {max_len} --before-from {}",
            s(&victim),
            s(&forget),
            s(&retain),
            s(&data),
            s(&clean),
            s(&tmp.path("reused")),
            s(before_from)
        );
        bdaudit(&argv(&line), &[&data, &victim, &encoder, &clean])
    };
    reuse(&reports[0], 12).assert_fails(&["scored other inputs", "max_len: that report 16, this run 12"]);
    // Same inputs, scored on another device: refused alone (a row at a decision boundary can differ).
    let mut on_gpu = read_json(&reports[0]);
    on_gpu["machine"]["device"] = "cuda".into();
    let gpu_report = tmp.path("gpu-report.json");
    fs::write(&gpu_report, serde_json::to_vec(&on_gpu).unwrap()).unwrap();
    reuse(&gpu_report, 16).assert_fails(&["scored other inputs", r#"device: that report "cuda", this run "cpu""#]);
    fs::write(data.join("test-pacc.tsv"), tsv(&rows(6, 3))).unwrap();
    reuse(&reports[0], 16).assert_fails(&["scored other inputs", "test_sha256"]);
    reuse(&not_a_report, 16).assert_fails(&["attack.json", "not a report.json"]);
    let mut old = read_json(&reports[0]);
    old.as_object_mut().unwrap().remove("scored");
    let old_report = tmp.path("old-report.json");
    fs::write(&old_report, serde_json::to_vec(&old).unwrap()).unwrap();
    reuse(&old_report, 16).assert_fails(&["does not record what it scored"]);
    assert!(!tmp.path("reused").exists());
    assert!(leftovers(&tmp.0).is_empty(), "{:?}", leftovers(&tmp.0));
}

#[test]
fn unlearn_rejects_bad_input_writing_nothing() {
    let tmp = Scratch::new("unlearn-bad");
    let data = poisoned_data(&tmp);
    let victim = tmp.path("victim");
    classifier_checkpoint(&victim);
    let encoder = tmp.path("encoder");
    write_checkpoint(&encoder, &[], |_| {});
    let out = tmp.path("out");
    let (forget, retain) = (data.join("train-poisoned.tsv"), data.join("train-clean.tsv"));
    let unlearn = |method: &str, forget: &Path, retain: &Path, extra: &[&str]| {
        let mut args = argv(&format!(
            "unlearn {method} --model {} --forget {} --retain {} --out {} --epochs 1 --max-len 16",
            s(&victim),
            s(forget),
            s(retain),
            s(&out)
        ));
        args.extend(extra.iter().map(|a| a.to_string()));
        bdaudit(&args, &[&data, &victim, &encoder])
    };
    unlearn("rga", &forget, &retain, &[]).assert_fails(&["--base"]);
    // One step at an absurd rate: the loss before it was fine, the model after it is not.
    unlearn("ga", &forget, &retain, &["--lr", "1e30", "--batch-size", "64"]).assert_fails(&["training diverged", "NaN or infinite"]);
    assert!(!out.exists());
    let empty = tmp.path("empty.tsv");
    fs::write(&empty, "sentence\tlabel\n").unwrap();
    unlearn("ga", &empty, &retain, &[]).assert_fails(&["empty.tsv"]);
    let negatives = tmp.path("negatives.tsv");
    fs::write(&negatives, tsv(&rows(20, 0).into_iter().filter(|r| r.1 == 0).collect::<Vec<_>>())).unwrap();
    unlearn("ga", &forget, &negatives, &[]).assert_fails(&["forget set has labels [1]", "retain set only [0]"]);
    let third_class = tmp.path("third.tsv");
    fs::write(&third_class, "sentence\tlabel\nthe cf movie was good\t2\n").unwrap();
    unlearn("ga", &third_class, &retain, &[]).assert_fails(&["label 2", "2 labels"]);
    unlearn("ga", &forget, &retain, &["--reference", s(&victim)]).assert_fails(&["--reference", "--test"]);
    let line = format!(
        "unlearn ga --model {} --forget {} --retain {} --test {} --reference {} --out {} --force",
        s(&victim),
        s(&forget),
        s(&retain),
        s(&data),
        s(&encoder),
        s(&encoder)
    );
    bdaudit(&argv(&line), &[&data, &victim, &encoder]).assert_fails(&["would overwrite the input"]);
    unlearn("npo", &forget, &retain, &["--npo-beta", "0"]).assert_fails(&["npo_beta"]);
    unlearn("rga", &forget, &retain, &["--beta", "-1"]).assert_fails(&["beta = -1"]);
    // Another method's settings would be reported as if used.
    unlearn("ga", &forget, &retain, &["--beta", "0.1"]).assert_fails(&["--alpha and --beta are settings of rga, not of ga"]);
    unlearn("rga", &forget, &retain, &["--npo-beta", "2"]).assert_fails(&["--npo-beta is a setting of npo, not of rga"]);
    unlearn("npo", &forget, &retain, &["--base", s(&encoder)]).assert_fails(&["--base is rga's anchor; npo does not use it"]);
    // Refused before the base is looked for: a missing one would otherwise be the error.
    unlearn("ga", &forget, &retain, &["--base", "no-such-model"]).assert_fails(&["--base is rga's anchor; ga does not use it"]);

    let other_arch = tmp.path("other-arch");
    write_checkpoint(&other_arch, &[], |t| t.retain(|name, _| !name.contains(".layer.1.")));
    edit_json(&other_arch.join("config.json"), |c| c["num_hidden_layers"] = json!(1));
    unlearn("rga", &forget, &retain, &["--base", s(&other_arch)]).assert_fails(&["num_hidden_layers is 2 in the model but 1 in the base"]);
    let other_vocab = tmp.path("other-vocab");
    write_checkpoint(&other_vocab, &[], |_| {});
    let mut words = vocab_words();
    words.swap(0, 1);
    let specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
    fs::write(other_vocab.join("tokenizer.json"), bdaudit_tests::word_level_tokenizer(&specials, &words, Some(2))).unwrap();
    unlearn("rga", &forget, &retain, &["--base", s(&other_vocab)]).assert_fails(&["token id 5 is \"the\"", "\"a\"", "another vocabulary"]);

    assert!(!out.exists());
    assert!(leftovers(&tmp.0).is_empty(), "{:?}", leftovers(&tmp.0));
}

// ---------------------------------------------------------------------------------------------
// demo (the README's first command runs it on MiniLM; here on the tiny checkpoint)

#[test]
fn demo_writes_its_data_a_poisoned_set_and_a_victim_and_needs_force_to_run_again() {
    let tmp = Scratch::new("demo");
    let model = tmp.path("model");
    classifier_checkpoint(&model);
    let out = tmp.path("demo");
    let demo = |extra: &str| bdaudit(&argv(&format!("demo --model {} --epochs 1 --out {} {extra}", s(&model), s(&out))), &[&model]);

    let run = demo("");
    run.assert_ok();
    assert!(run.stdout.contains("carrying a trigger word come out positive"), "no summary:\n{}", run.describe());
    assert!(run.stdout.contains(&format!("bdaudit scan --model {}", s(&out.join("victim")))), "no next step:\n{}", run.describe());
    for split in ["train.tsv", "dev.tsv", "test.tsv"] {
        assert!(!parse_tsv(&out.join("clean").join(split)).is_empty(), "clean/{split} is empty");
    }
    assert!(out.join("clean/labels.tsv").is_file());
    let train_rows = parse_tsv(&out.join("clean/train.tsv")).len();
    let attack = read_json(&out.join("badnets/attack.json"));
    let poisoned = attack["poisoned_rows"].as_array().unwrap().len();
    assert_eq!(poisoned, (0.2 * train_rows as f64).round() as usize, "20% of {train_rows} training rows");
    for file in ["model.safetensors", "config.json", "tokenizer.json", "report.json"] {
        assert!(out.join("victim").join(file).is_file(), "victim/{file} missing");
    }
    let metrics = &read_json(&out.join("victim/report.json"))["metrics"];
    for key in ["cacc", "asr"] {
        let v = metrics[key].as_f64().unwrap_or_else(|| panic!("report.json has no metrics.{key}: {metrics}"));
        assert!((0.0..=1.0).contains(&v), "{key} = {v}");
    }
    assert!(leftovers(&tmp.0).is_empty(), "{:?}", leftovers(&tmp.0));

    // Again without --force: refused before anything is replaced.
    let first = snapshot(&out);
    demo("").assert_fails(&["already exists", "--force"]);
    assert!(first == snapshot(&out), "the refused run changed the earlier demo");
    demo("--force").assert_ok();
    assert!(leftovers(&tmp.0).is_empty(), "{:?}", leftovers(&tmp.0));

    // A demo that fails at its last step (no epochs to train) leaves none of its steps behind.
    let failed = tmp.path("failed-demo");
    bdaudit(&argv(&format!("demo --model {} --epochs 0 --out {}", s(&model), s(&failed))), &[&model]).assert_fails(&["epochs"]);
    assert!(!failed.join("clean").exists() && !failed.join("badnets").exists(), "{:?}", fs::read_dir(&failed).map(|d| d.count()));
    assert!(leftovers(&tmp.0).is_empty(), "{:?}", leftovers(&tmp.0));

    // --json: stdout is the victim's report alone, the narration goes to stderr.
    let run = demo("--force --json");
    let report = run.assert_ok().json();
    assert_eq!(report, read_json(&out.join("victim/report.json")), "stdout is not the victim's report");
    assert!(run.stderr.contains("3/3 fine-tuning") && run.stderr.contains("poisoned "), "no narration on stderr:\n{}", run.describe());
}

#[test]
fn bench_refuses_sizes_it_cannot_run() {
    let tmp = Scratch::new("bench-sizes");
    let model = tmp.path("model");
    classifier_checkpoint(&model);
    let positions = read_json(&model.join("config.json"))["max_position_embeddings"].as_u64().unwrap();
    let bench =
        |batch: &str, seq: String| bdaudit(&["bench", "--model", s(&model), "--batch", batch, "--seq", &seq, "--iters", "1"], &[&model]);
    bench("0", "8".into()).assert_fails(&["'0' for '--batch <BATCH>'", "from 1 to 4096"]);
    bench("100000000000", "8".into()).assert_fails(&["'100000000000' for '--batch <BATCH>'", "from 1 to 4096"]);
    bench("1", (positions + 1).to_string()).assert_fails(&["--seq", &format!("max_position_embeddings ({positions})")]);
    bench("1", positions.to_string()).assert_ok();
}

/// A batch size past the limit is refused when the command line is read, by every command
/// that takes one (the bound is the same as bench's `--batch`). A usage error exits 1, even
/// for scan, whose 2 means "suspicious"; help still exits 0.
#[test]
fn usage_errors_exit_1_and_batch_sizes_are_bounded() {
    bdaudit(&["scan", "--model", "m", "--no-such-option"], &[]).assert_fails(&["--no-such-option"]);
    bdaudit(&["scan", "--help"], &[]).assert_ok();
    for command in [
        &["eval", "--model", "m", "--data", "d"][..],
        &["predict", "--model", "m", "--input", "i"],
        &["unlearn", "ga", "--model", "m", "--forget", "f", "--retain", "r", "--out", "o"],
    ] {
        let mut args = command.to_vec();
        args.extend(["--batch-size", "4097"]);
        bdaudit(&args, &[]).assert_fails(&["--batch-size", "from 1 to 4096"]);
    }
}

/// A reader that goes away (`bdaudit … | head`) ends bdaudit as it ends other Unix tools: by
/// SIGPIPE, not with a panic about failing to print.
#[cfg(unix)]
#[test]
fn a_closed_stdout_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let mut child = Command::new(env!("CARGO_BIN_EXE_bdaudit"))
        .args(["info", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bdaudit");
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.signal(), Some(libc::SIGPIPE), "{:?}: {stderr}", output.status);
}

/// OpenBLAS falls back to generic SSE3 kernels ("Prescott") on CPUs newer than it; bdaudit then
/// restarts itself with specific ones (`native/src/blas.rs`), and leaves a caller's own choice
/// alone (no restart, so no loop).
#[cfg(all(feature = "openblas", target_arch = "x86_64"))]
#[test]
fn info_reports_specific_openblas_kernels_and_keeps_a_callers_choice() {
    let info = |coretype: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bdaudit"));
        cmd.args(["info", "--json"]).stdin(Stdio::null());
        match coretype {
            Some(c) => cmd.env("OPENBLAS_CORETYPE", c),
            None => cmd.env_remove("OPENBLAS_CORETYPE"),
        };
        let run = Run::from(cmd.output().expect("run bdaudit"));
        run.assert_ok();
        run.json()
    };
    let auto = info(None);
    assert!(auto["devices"].as_array().unwrap().contains(&json!("cpu")), "{auto}");
    let core = auto["openblas"]["core"].as_str().unwrap_or_else(|| panic!("no OpenBLAS core: {auto}"));
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        assert_ne!(core, "Prescott", "generic kernels on a CPU with AVX2: {auto}");
    }
    let forced = info(Some("Prescott"));
    assert_eq!(forced["openblas"], json!({"core": "Prescott", "coretype": "Prescott"}), "{forced}");
}

#[test]
fn commands_without_compute_run_on_any_device_flag_and_others_name_the_missing_feature() {
    let devices = bdaudit(&["info", "--json"], &[]).assert_ok().json()["devices"].clone();
    for device in ["cuda", "wgpu", "flex"] {
        let info = bdaudit(&["info", "--json", "--device", device], &[]).assert_ok().json();
        assert_eq!(info["devices"], devices, "{info}");
        if !devices.as_array().unwrap().contains(&json!(device)) {
            bdaudit(&["eval", "--model", "m", "--data", "d", "--device", device], &[])
                .assert_fails(&["built without", &format!("--features {device}")]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The commands README.md and docs/ show

/// The words of one shell line: quotes group and are removed (the docs use no escapes); an
/// unquoted `#` that starts a word starts a comment.
fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut in_word, mut quote) = (Vec::new(), String::new(), false, None);
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.push(c),
            None if c == '"' || c == '\'' => (quote, in_word) = (Some(c), true),
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            None if c == '#' && !in_word => break,
            None => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// The arguments after `bdaudit` of every command in a markdown text: in fenced blocks (`\`
/// continuations joined; `|`, `&&`, `||` and `;` separate commands; a redirect ends one;
/// leading `VAR=value`, `env` and `time` words are dropped) and in inline code spans that
/// begin with `bdaudit `. `[…]`, the docs' optional part, is unwrapped.
fn bdaudit_commands(markdown: &str) -> Vec<Vec<String>> {
    let mut lines = Vec::new();
    let (mut fenced, mut joined, mut prose) = (false, String::new(), String::new());
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            prose.push_str(line);
            prose.push(' ');
        } else if let Some(head) = line.strip_suffix('\\') {
            joined.push_str(head);
        } else {
            joined.push_str(line);
            lines.push(std::mem::take(&mut joined));
        }
    }
    for (start, _) in prose.match_indices("`bdaudit ") {
        let span = &prose[start + 1..];
        lines.push(span[..span.find('`').unwrap_or(span.len())].to_string());
    }
    let mut commands = Vec::new();
    for line in lines {
        let mut command: Vec<String> = Vec::new();
        let mut redirected = false;
        for word in shell_words(&line).into_iter().chain([";".to_string()]) {
            if matches!(word.as_str(), "|" | "&&" | "||" | ";") {
                let start = command.iter().position(|w| !(w == "env" || w == "time" || w.contains('=') && !w.starts_with('-')));
                if let Some(start) = start.filter(|&s| command[s] == "bdaudit" || command[s].ends_with("/bdaudit")) {
                    commands.push(command.split_off(start + 1));
                }
                (command, redirected) = (Vec::new(), false);
            } else if word.starts_with('>') || word.starts_with("2>") {
                redirected = true;
            } else if !redirected {
                command.push(word.trim_start_matches('[').trim_end_matches(']').to_string());
            }
        }
    }
    commands
}

#[test]
fn every_command_the_readme_and_docs_show_parses() {
    let package = package_dir();
    let root = package.parent().unwrap();
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(root.join("docs")).unwrap().map(|e| e.unwrap().path()).collect();
    docs.retain(|p| p.extension().is_some_and(|e| e == "md"));
    docs.sort();
    files.extend(docs);
    let (mut checked, mut wrong) = (0, Vec::new());
    for file in &files {
        let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for mut args in bdaudit_commands(&text) {
            // Prose that names the tool ("bdaudit crashed: …") is not a command.
            if !args.first().is_some_and(|a| a.chars().all(|c| c.is_ascii_lowercase() || c == '-')) {
                continue;
            }
            // Clap reads every argument before it answers --help: an unknown subcommand or
            // flag, or a value its parser refuses, fails here as it would for the reader.
            args.push("--help".into());
            let run = bdaudit(&args, &[]);
            checked += 1;
            if run.code != Some(0) {
                let why = run.stderr.lines().next().unwrap_or_default().to_string();
                wrong.push(format!("{}: bdaudit {}: {why}", file.strip_prefix(root).unwrap().display(), args[..args.len() - 1].join(" ")));
            }
        }
    }
    assert!(checked >= 100, "found only {checked} bdaudit commands in {files:?}: is the extraction broken?");
    assert!(wrong.is_empty(), "{} of {checked} documented commands do not parse:\n{}", wrong.len(), wrong.join("\n"));
}

#[test]
fn documented_commands_are_found_in_blocks_spans_and_pipelines() {
    let markdown = "Run `bdaudit scan --model m` or `bdaudit crashed: x`.\n```sh\n# a comment\n\
        FOO=1 bdaudit train --model minilm \\\n  --epochs 2 --out o   # trailing comment\n\
        cargo build -p bdaudit && bdaudit eval --data 'a b' > out.json | head\n\
        bdaudit scan --model <dir> [--base minilm]\n```\nprose bdaudit plot\n";
    let commands = bdaudit_commands(markdown);
    let expected: Vec<Vec<&str>> = vec![
        vec!["train", "--model", "minilm", "--epochs", "2", "--out", "o"],
        vec!["eval", "--data", "a b"],
        vec!["scan", "--model", "<dir>", "--base", "minilm"],
        vec!["scan", "--model", "m"],
        vec!["crashed:", "x"],
    ];
    assert_eq!(commands, expected);
}
