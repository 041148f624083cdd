//! Everything bdaudit does with files: reading checkpoints and data sets, resolving model
//! names, and writing output directories atomically without touching inputs.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bdaudit_core::checkpoint::CheckpointFiles;
use bdaudit_core::data::{self, Example, Format, LabelSet};

/// Refuse files larger than this before reading them: a 1.3 GB BERT-large checkpoint fits, a
/// mistaken multi-GB file does not get loaded into memory.
const MAX_FILE_BYTES: u64 = 4 << 30;

pub fn read(path: &Path) -> Result<Vec<u8>> {
    read_capped(path, MAX_FILE_BYTES)
}

/// Opens `path` for reading after refusing it by size; its metadata says whether it is a
/// regular file (a device or a pipe reports size 0 and may never end).
fn open_capped(path: &Path, cap: u64) -> Result<(fs::File, fs::Metadata)> {
    let meta = fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.len() > cap {
        bail!("{} is {} bytes, more than the {cap} bdaudit accepts", path.display(), meta.len());
    }
    let file = fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok((file, meta))
}

fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>> {
    let (file, meta) = open_capped(path, cap)?;
    read_to_cap(file, &meta, cap, path)
}

fn read_to_cap(file: fs::File, meta: &fs::Metadata, cap: u64, path: &Path) -> Result<Vec<u8>> {
    // The size above is 0 for pipes and devices (/dev/zero never ends): the read is capped too.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(cap + 1).read_to_end(&mut bytes).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > cap {
        bail!("{} holds more than the {cap} bytes bdaudit accepts", path.display());
    }
    Ok(bytes)
}

/// The safetensors crate's limit on a header (its `MAX_HEADER_SIZE`).
const SAFETENSORS_MAX_HEADER: u64 = 100_000_000;
/// What is read of a file whose first 8 bytes are no header length: enough for the core to
/// recognise a Git LFS pointer (about 130 bytes) or call the rest malformed.
const SNIFF_BYTES: u64 = 1024;

/// Reads model.safetensors. A regular file is read whole, as any input. A device or a pipe has
/// no size to check beforehand, but a safetensors file declares its own: an 8-byte header
/// length, then a JSON header whose data offsets end where the file does. Only that much is
/// read, so `/dev/zero` in place of the weights is malformed after 8 bytes instead of after
/// the 4 GiB cap. What was read goes to the core's parser either way, which gives every error.
fn read_safetensors(path: &Path) -> Result<Vec<u8>> {
    let (mut file, meta) = open_capped(path, MAX_FILE_BYTES)?;
    if meta.is_file() {
        return read_to_cap(file, &meta, MAX_FILE_BYTES, path);
    }
    let context = || format!("cannot read {}", path.display());
    let mut bytes = Vec::new();
    (&mut file).take(8).read_to_end(&mut bytes).with_context(context)?;
    let Ok(length) = <[u8; 8]>::try_from(bytes.as_slice()) else { return Ok(bytes) };
    let header_len = u64::from_le_bytes(length);
    if header_len > SAFETENSORS_MAX_HEADER {
        (&mut file).take(SNIFF_BYTES).read_to_end(&mut bytes).with_context(context)?;
        return Ok(bytes);
    }
    (&mut file).take(header_len).read_to_end(&mut bytes).with_context(context)?;
    let Some(data_len) = declared_data_len(&bytes[8..]) else { return Ok(bytes) };
    if header_len.saturating_add(8).saturating_add(data_len) > MAX_FILE_BYTES {
        bail!("{} declares {} bytes of tensors, more than the {MAX_FILE_BYTES} bdaudit accepts", path.display(), data_len);
    }
    (&mut file).take(data_len).read_to_end(&mut bytes).with_context(context)?;
    Ok(bytes)
}

/// Where a safetensors header says its tensor data ends; `None` for a header the core's parser
/// will refuse anyway.
fn declared_data_len(header: &[u8]) -> Option<u64> {
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(header).ok()?;
    header
        .iter()
        .filter(|(name, _)| *name != "__metadata__")
        .try_fold(0, |end, (_, tensor)| Some(end.max(tensor.get("data_offsets")?.get(1)?.as_u64()?)))
}

/// Why `path` is not the `kind` ("file" or "directory") a command needs: absent, or of the
/// other kind.
pub fn unusable(path: &Path, kind: &str) -> String {
    if path.exists() {
        format!("is not a {kind}")
    } else {
        "does not exist".into()
    }
}

/// Where `scripts/fetch-model` caches models.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("BDAUDIT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| ".".into())).join(".cache/bdaudit"))
}

/// A model argument: `minilm` (all-MiniLM-L6-v2 from the cache) or a checkpoint directory.
pub fn resolve_model(arg: &str) -> Result<PathBuf> {
    let dir = match arg {
        "minilm" | "all-MiniLM-L6-v2" => {
            let dir = cache_dir().join("models/all-MiniLM-L6-v2");
            if !dir.join(CheckpointFiles::MODEL).is_file() {
                bail!("all-MiniLM-L6-v2 is not downloaded yet: run scripts/fetch-model (expected at {})", dir.display());
            }
            dir
        }
        path => PathBuf::from(path),
    };
    if !dir.is_dir() {
        bail!("model directory {} {} (give a checkpoint directory or `minilm`)", dir.display(), unusable(&dir, "directory"));
    }
    Ok(dir)
}

pub fn read_checkpoint(dir: &Path) -> Result<CheckpointFiles> {
    CheckpointFiles::read_with(|name| match name {
        CheckpointFiles::MODEL => read_safetensors(&dir.join(name)),
        _ => read(&dir.join(name)),
    })
}

/// Reads one data file in TSV, CSV or JSONL (by extension; TSV otherwise).
pub fn read_examples(path: &Path) -> Result<Vec<Example>> {
    let bytes = read(path)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let format = Format::from_path_name(name).unwrap_or(Format::Tsv);
    Ok(data::parse(&bytes, format, &path.display().to_string())?)
}

/// A data set directory: `train.tsv`, `dev.tsv`, `test.tsv`, optional `labels.tsv`, and the
/// triggered test sets `test-asr.tsv` / `test-pacc.tsv` that `bdaudit attack` writes.
pub struct DataDir {
    pub path: PathBuf,
}

impl DataDir {
    pub fn open(path: &Path) -> Result<Self> {
        if !path.is_dir() {
            bail!("data directory {} {}", path.display(), unusable(path, "directory"));
        }
        Ok(DataDir { path: path.to_path_buf() })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.file(name).is_file()
    }

    pub fn split(&self, name: &str) -> Result<Vec<Example>> {
        let path = self.file(name);
        if !path.is_file() {
            bail!("{} {}", path.display(), unusable(&path, "file"));
        }
        read_examples(&path)
    }

    /// The split if present; a directory (or other non-file) under its name is an error.
    pub fn optional(&self, name: &str) -> Result<Option<Vec<Example>>> {
        if self.file(name).exists() {
            self.split(name).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Class names from `labels.tsv`, if the directory has one.
    pub fn label_names(&self) -> Result<Option<LabelSet>> {
        if !self.has("labels.tsv") {
            return Ok(None);
        }
        let path = self.file("labels.tsv");
        Ok(Some(LabelSet::parse_tsv(&read(&path)?, &path.display().to_string())?))
    }

    /// Class names from `labels.tsv`, or numeric names for the largest label seen.
    pub fn labels(&self, seen: &[&[Example]]) -> Result<LabelSet> {
        let max = seen.iter().flat_map(|s| s.iter()).map(|e| e.label).max().unwrap_or(0);
        Ok(self.label_names()?.unwrap_or_else(|| LabelSet::numeric(max + 1)))
    }
}

/// The classes a model is sized for on `rows` when no labels.tsv names them: a classifier
/// keeps its own (the rows may use only some of them); a bare encoder gets one per label up
/// to the largest in `rows`.
pub fn classes_for(files: &CheckpointFiles, rows: &[Example]) -> Result<usize> {
    Ok(files.head_classes()?.unwrap_or_else(|| rows.iter().map(|e| e.label).max().unwrap_or(0) + 1))
}

/// Writes one file through a temporary sibling and a rename, so readers never see half of it;
/// an existing file is replaced only with `force`, and never one of `inputs`.
pub fn write_file_atomic(target: &Path, bytes: &[u8], force: bool, inputs: &[PathBuf]) -> Result<()> {
    if target.exists() && !force {
        bail!("{} already exists: choose another --out or pass --force to replace it", target.display());
    }
    if target.is_dir() {
        bail!("{} is a directory", target.display());
    }
    if let Ok(t) = target.canonicalize() {
        if inputs.iter().any(|i| i.canonicalize().is_ok_and(|i| i == t)) {
            bail!("--out {} would overwrite an input", target.display());
        }
    }
    let name = target.file_name().and_then(|n| n.to_str()).context("--out needs a file name")?;
    let staging = target.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    fs::write(&staging, bytes).with_context(|| format!("cannot write {}", staging.display()))?;
    fs::rename(&staging, target).with_context(|| format!("cannot move output into {}", target.display())).inspect_err(|_| {
        let _ = fs::remove_file(&staging);
    })
}

/// An output directory written in full under a temporary name, then renamed into place, so a
/// failure never leaves a half-written checkpoint and an existing one is only replaced with
/// `--force`.
pub struct OutputDir {
    target: PathBuf,
    staging: PathBuf,
    force: bool,
}

impl OutputDir {
    /// Checks, before any work is done, that `target` may be written and is not an input.
    pub fn prepare(target: &Path, force: bool, inputs: &[&Path]) -> Result<Self> {
        if target.exists() && !force {
            bail!("{} already exists: choose another --out or pass --force to replace it", target.display());
        }
        if target.exists() && !target.is_dir() {
            bail!("{} exists and is not a directory", target.display());
        }
        // `a/..` or `.` names a directory by its relation to another: the checks below need
        // the target's own name (and `--out model/new/..` would be the model itself).
        if !matches!(target.components().next_back(), Some(std::path::Component::Normal(_))) {
            bail!("--out {} must end in a directory name, not `.` or `..`", target.display());
        }
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // Nothing is created yet (the staging directory and its parents come with the first
        // write), so a run refused here leaves no empty directories behind.
        let canonical_target = through_existing_ancestor(&parent)?.join(target.file_name().unwrap_or_default());
        for input in inputs {
            if let Ok(input) = input.canonicalize() {
                // Replacing the target would delete an input inside it (or the input itself).
                if input.starts_with(&canonical_target) {
                    bail!("--out {} would overwrite the input {}", target.display(), input.display());
                }
            }
        }
        let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("out");
        let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
        if staging.exists() {
            fs::remove_dir_all(&staging)?;
        }
        Ok(OutputDir { target: target.to_path_buf(), staging, force })
    }

    /// Writes `name`, a path relative to the output directory (subdirectories are created).
    pub fn write(&self, name: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
        let path = self.staging.join(name);
        let dir = path.parent().unwrap_or(&self.staging);
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Writes a Hugging Face checkpoint's three files into the subdirectory `dir` ("" for the
    /// output directory itself).
    pub fn write_checkpoint(&self, dir: &str, files: &CheckpointFiles) -> Result<()> {
        files.named().into_iter().try_for_each(|(name, bytes)| self.write(Path::new(dir).join(name), bytes))
    }

    /// Writes a Hugging Face checkpoint directory's three files and `report.json`, moves the
    /// directory into place, and with `--json` prints the report as the command's output.
    pub fn commit_checkpoint<T: serde::Serialize>(self, files: &CheckpointFiles, report: &T, json: bool) -> Result<PathBuf> {
        self.write_checkpoint("", files)?;
        let report = crate::machine::stamped(report)?;
        self.write_json("report.json", &report)?;
        let dir = self.commit()?;
        if json {
            println!("{report}");
        }
        Ok(dir)
    }

    pub fn write_json<T: serde::Serialize>(&self, name: &str, value: &T) -> Result<()> {
        self.write(name, &serde_json::to_vec_pretty(value)?)
    }

    /// Moves the finished directory into place (replacing an old one only with `--force`).
    pub fn commit(self) -> Result<PathBuf> {
        fs::create_dir_all(&self.staging)?;
        if self.target.exists() {
            if !self.force {
                bail!("{} appeared while bdaudit was running; not replacing it", self.target.display());
            }
            let old = self.staging.with_extension("old");
            fs::rename(&self.target, &old)?;
            fs::rename(&self.staging, &self.target)?;
            fs::remove_dir_all(&old)?;
        } else {
            fs::rename(&self.staging, &self.target).with_context(|| format!("cannot move output into {}", self.target.display()))?;
        }
        Ok(self.target.clone())
    }
}

/// `path` made absolute through its nearest existing ancestor (canonicalised, links resolved),
/// the components below it appended as they are: a path that does not exist yet, resolved
/// without creating it.
fn through_existing_ancestor(path: &Path) -> Result<PathBuf> {
    let mut below = Vec::new();
    let mut at = path;
    loop {
        if let Ok(found) = at.canonicalize() {
            return Ok(below.iter().rev().fold(found, |p, name| p.join(name)));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                below.push(name.to_owned());
                at = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
            }
            _ => bail!("cannot resolve {}", path.display()),
        }
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.staging);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn reading_stops_at_the_cap_where_the_size_is_unknown() {
        let err = read_capped(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(err.to_string(), "/dev/zero holds more than the 1048576 bytes bdaudit accepts");
        assert!(read_capped(Path::new("/dev/null"), 1 << 20).unwrap().is_empty());
    }
}
