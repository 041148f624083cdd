//! bdaudit in the browser: a wasm-bindgen API over `bdaudit-core`.
//!
//! ```js
//! import init, { Auditor } from "./pkg/bdaudit_web.js";
//! await init();
//! const auditor = await Auditor.load(modelBytes, configBytes, tokenizerBytes, "auto");
//! auditor.backend();                          // "webgpu" or "cpu"
//! auditor.backendReason();                    // why, e.g. "the only WebGPU adapter is …"
//! JSON.parse(await auditor.classify(JSON.stringify(["a fine film"])));
//! // [{ text: "a fine film", label: "1", probs: [0.1, 0.9] }]
//! const report = JSON.parse(await auditor.scan(JSON.stringify({ triggers: ["cf"] }), null,
//!     (stage, done, total) => console.log(stage, done, total)));
//! report.verdict.level;                        // "clean" | "inconclusive" | "suspicious"
//! // The three probes alone:
//! JSON.parse(await auditor.triggerShift(JSON.stringify({ trigger: "cf" }))).asr;
//! JSON.parse(await auditor.attentionVariance("{}")).scores;     // [layer][head]
//! JSON.parse(await auditor.tokenScores(baseAuditor, 10));       // [{ id, token, score }]
//! ```
//!
//! The backend is chosen once, at load (see [`BackendChoice`]): WebGPU (burn-wgpu) on a
//! hardware adapter, otherwise burn-ndarray on the CPU. Both run the same generic
//! [`session::Session`]. Failures are `Error`s carrying the core's typed message.

mod device;
pub mod session;

use std::str::FromStr;

use bdaudit_core::attack::Trigger;
use bdaudit_core::checkpoint::{CheckpointError, CheckpointFiles, TokenizerError};
use bdaudit_core::data::demo;
use bdaudit_core::probe::attention::AttentionError;
use bdaudit_core::probe::token_scores::TokenScoreError;
use bdaudit_core::probe::trigger_shift::TriggerShiftError;
use bdaudit_core::progress::Progress;
use bdaudit_core::scan::{ScanConfig, ScanError};
use burn::backend::{NdArray, Wgpu};
use wasm_bindgen::prelude::*;

use device::{AdapterInfo, Probe};
use session::Session;

/// Everything that can go wrong in the web API; shown to JS as an `Error` with this message.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("texts must be a JSON array of strings: {0}")]
    Input(String),
    #[error(transparent)]
    Inference(#[from] bdaudit_core::eval::InferenceError),
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error(transparent)]
    Attention(#[from] AttentionError),
    #[error(transparent)]
    TriggerShift(#[from] TriggerShiftError),
    #[error(transparent)]
    TokenScores(#[from] TokenScoreError),
    #[error("options: {0}")]
    Options(String),
    #[error("model.safetensors is {size} MB, more than this page's {budget} MB budget: scan a smaller model (MiniLM-L6 is 91 MB), or use the bdaudit CLI")]
    TooLarge { size: u64, budget: u64 },
    #[error("the base checkpoint runs on {base} but the model on {model}: load both with the same preference")]
    BaseBackend { base: &'static str, model: &'static str },
    #[error("backend must be \"auto\", \"webgpu\" or \"cpu\", not {0:?}")]
    BackendChoice(String),
}

/// Which backend [`Auditor::load`] may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// WebGPU on a hardware adapter; the CPU when there is none or only a software one
    /// (SwiftShader and the like emulate the GPU on the CPU: tens of times slower than
    /// burn-ndarray on the same cores, docs/benchmarks.md).
    Auto,
    /// WebGPU on any adapter, software ones included (benchmarks); the CPU only when there is
    /// no adapter at all.
    WebGpu,
    Cpu,
}

impl FromStr for BackendChoice {
    type Err = WebError;

    fn from_str(s: &str) -> Result<Self, WebError> {
        match s {
            "auto" | "" => Ok(BackendChoice::Auto),
            "webgpu" => Ok(BackendChoice::WebGpu),
            "cpu" => Ok(BackendChoice::Cpu),
            other => Err(WebError::BackendChoice(other.to_string())),
        }
    }
}

/// Whether to run on WebGPU, and why, in words for the page and the report.
fn choose(choice: BackendChoice, probe: &Probe) -> (bool, String) {
    let asked = match choice {
        BackendChoice::WebGpu => "WebGPU was requested but ",
        _ => "",
    };
    match (choice, probe) {
        (BackendChoice::Cpu, _) => (false, "the CPU was requested".into()),
        (_, Probe::NoWebGpu) => (false, format!("{asked}this browser has no WebGPU (no navigator.gpu)")),
        (_, Probe::NoAdapter) => (false, format!("{asked}WebGPU has no adapter here")),
        (BackendChoice::Auto, Probe::Adapter(a)) if a.is_software() => (
            false,
            format!("the only WebGPU adapter ({a}) emulates a GPU on the CPU, slower than the CPU backend; choose WebGPU to use it anyway"),
        ),
        (BackendChoice::WebGpu, Probe::Adapter(a)) if a.is_software() => {
            (true, format!("WebGPU was requested, on a software adapter ({a})"))
        }
        (_, Probe::Adapter(a)) => (true, format!("WebGPU adapter {a}")),
    }
}

/// Largest `model.safetensors` the page loads, in MB (10⁶ bytes). A float32 model needs its
/// weights about three times over while loading (file bytes, parsed tensors, device copy);
/// 400 MB keeps that well inside the 4 GB a wasm32 module can address.
pub const MEMORY_BUDGET_MB: u64 = 400;

/// Refuses a `model.safetensors` of `bytes` over [`MEMORY_BUDGET_MB`].
fn check_size(bytes: u64) -> Result<(), WebError> {
    if bytes > MEMORY_BUDGET_MB * 1_000_000 {
        return Err(WebError::TooLarge { size: bytes.div_ceil(1_000_000), budget: MEMORY_BUDGET_MB });
    }
    Ok(())
}

/// Panics, as a bug anywhere under the core would: a trap in wasm, which spends the module.
/// The page's end-to-end test calls it to check that the worker reports the panic's message
/// and the page starts a fresh worker. It stands in for a real input because bdaudit refuses
/// every input known to make it or a dependency panic (`tests/tests/bad_input.rs` sweeps every
/// field of a checkpoint's three files), so no file can.
#[wasm_bindgen(js_name = panicForTests)]
pub fn panic_for_tests() {
    install_panic_logger();
    panic!("a panic the end-to-end test asked for");
}

/// The memory budget's check alone, for a file's size before it is read: the page asks with
/// `File.size` and the widget with the server's `Content-Length`, so that a model of several GB
/// is refused with this message instead of failing to fit in memory on the way in.
#[wasm_bindgen(js_name = checkModelSize)]
pub fn check_model_size(bytes: f64) -> Result<(), JsError> {
    // A JS number: sizes are integers far below 2⁵³; NaN or a negative size reads as 0.
    Ok(check_size(bytes as u64)?)
}

/// Parses an options object; an empty string means all defaults.
fn options<T: Default + serde::de::DeserializeOwned>(json: &str) -> Result<T, WebError> {
    if json.trim().is_empty() {
        return Ok(T::default());
    }
    serde_json::from_str(json).map_err(|e| WebError::Options(e.to_string()))
}

/// Options of [`Auditor::scan`], from JSON (all optional).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ScanOptions {
    /// Probe texts; default: 200 built-in English movie-review sentences.
    probe_texts: Option<Vec<String>>,
    /// Extra candidate trigger words.
    triggers: Vec<String>,
    /// Extra candidate trigger sentences.
    sentences: Vec<String>,
    seed: Option<u64>,
}

impl ScanOptions {
    /// The scan settings: the defaults shared with `bdaudit scan`, the seed and extra triggers
    /// from here.
    fn config(&self) -> ScanConfig {
        let defaults = ScanConfig::default();
        let mut config = ScanConfig { seed: self.seed.unwrap_or(defaults.seed), ..defaults };
        config.extra_triggers.extend(self.triggers.iter().map(|w| Trigger::BadNets { words: vec![w.clone()], insertions: 1 }));
        config.extra_triggers.extend(self.sentences.iter().map(|sentence| Trigger::AddSent { sentence: sentence.clone() }));
        config
    }

    /// The given probe texts without blank ones, or the scan's built-in ones.
    fn probe_texts(&self, config: &ScanConfig) -> Vec<String> {
        match &self.probe_texts {
            Some(texts) => texts.iter().filter(|t| !t.trim().is_empty()).cloned().collect(),
            None => demo::sentiment(config.max_probe_texts, config.seed).into_iter().map(|e| e.text).collect(),
        }
    }
}

/// Options of [`Auditor::trigger_shift`]: [`ScanOptions`]' `probeTexts` and `seed`, and the one
/// trigger, a word (`trigger`) or a sentence (`sentence`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ShiftOptions {
    #[serde(flatten)]
    scan: ScanOptions,
    trigger: Option<String>,
    sentence: Option<String>,
}

/// Forwards progress events to a JS callback `(stage, done, total)`.
struct JsProgress {
    callback: Option<js_sys::Function>,
    stage: String,
    done: usize,
    total: usize,
}

impl JsProgress {
    fn new(callback: Option<js_sys::Function>) -> Self {
        JsProgress { callback, stage: String::new(), done: 0, total: 0 }
    }

    fn emit(&self) {
        if let Some(f) = &self.callback {
            // A throwing callback must not abort the scan.
            let _ = f.call3(
                &JsValue::NULL,
                &JsValue::from_str(&self.stage),
                &JsValue::from(self.done as u32),
                &JsValue::from(self.total as u32),
            );
        }
    }
}

impl Progress for JsProgress {
    fn start(&mut self, stage: &str, total: usize) {
        self.stage = stage.to_string();
        self.done = 0;
        self.total = total;
        self.emit();
    }

    fn step(&mut self, _loss: Option<f64>) {
        self.done += 1;
        self.emit();
    }

    fn finish(&mut self, _summary: &str) {
        self.done = self.total;
        self.emit();
    }
}

/// A checkpoint loaded on the backend that was chosen for it.
// One per `Auditor`, which wasm-bindgen keeps on the heap anyway: boxing would only add a hop.
#[allow(clippy::large_enum_variant)]
enum Engine {
    WebGpu(Session<Wgpu>),
    Cpu(Session<NdArray>),
}

/// Runs `$body` with `$session` bound to the engine's `Session<B>`, whichever `B` it is.
macro_rules! with_session {
    ($engine:expr, $session:ident => $body:expr) => {
        match $engine {
            Engine::WebGpu($session) => $body,
            Engine::Cpu($session) => $body,
        }
    };
}

/// A classifier checkpoint, loaded and ready to audit.
#[wasm_bindgen]
pub struct Auditor {
    engine: Engine,
    backend_reason: String,
    adapter: Option<AdapterInfo>,
}

#[wasm_bindgen]
impl Auditor {
    /// Loads `model.safetensors`, `config.json` and `tokenizer.json` (as bytes). `backend`:
    /// `"auto"` (WebGPU on a hardware adapter, else the CPU), `"webgpu"` (any adapter, even a
    /// software one) or `"cpu"`. `num_labels` is only needed for a checkpoint without a
    /// classifier head (a bare encoder gets a new, seeded head of that many classes); with a
    /// head it must match.
    pub async fn load(
        model: Vec<u8>,
        config: Vec<u8>,
        tokenizer: Vec<u8>,
        backend: String,
        num_labels: Option<u32>,
    ) -> Result<Auditor, JsError> {
        install_panic_logger();
        let choice: BackendChoice = backend.parse()?;
        check_size(model.len() as u64)?;
        let files = CheckpointFiles { model, config, tokenizer };
        let num_labels = num_labels.map(|n| n as usize);
        let probe = match choice {
            BackendChoice::Cpu => Probe::NoAdapter,
            _ => device::probe().await,
        };
        let (use_gpu, reason) = choose(choice, &probe);
        let gpu = if use_gpu { device::gpu_device().await } else { None };
        let (engine, backend_reason) = match gpu {
            Some(device) => (Engine::WebGpu(Session::load(&files, num_labels, device)?), reason),
            None => {
                let reason = if use_gpu { format!("{reason}, but its device did not start") } else { reason };
                (Engine::Cpu(Session::load(&files, num_labels, Default::default())?), reason)
            }
        };
        let adapter = match probe {
            Probe::Adapter(a) => Some(a),
            _ => None,
        };
        Ok(Auditor { engine, backend_reason, adapter })
    }

    /// `"webgpu"` or `"cpu"`: where this model runs.
    pub fn backend(&self) -> String {
        match self.engine {
            Engine::WebGpu(_) => "webgpu",
            Engine::Cpu(_) => "cpu",
        }
        .to_string()
    }

    /// Why [`Auditor::backend`] is what it is, in words.
    #[wasm_bindgen(js_name = backendReason)]
    pub fn backend_reason(&self) -> String {
        self.backend_reason.clone()
    }

    /// The WebGPU adapter that was found, as JSON `{vendor, architecture, description,
    /// isFallbackAdapter}`, or `null` (none, or the CPU was requested and none was asked for).
    pub fn adapter(&self) -> String {
        to_json(&self.adapter)
    }

    /// Class names in output order, as a JSON array of strings.
    pub fn labels(&self) -> String {
        with_session!(&self.engine, s => to_json(&s.loaded.labels))
    }

    /// What loading did (`prefix`, `initialised`, `unused`, `num_params`), as JSON.
    #[wasm_bindgen(js_name = loadReport)]
    pub fn load_report(&self) -> String {
        with_session!(&self.engine, s => to_json(&s.loaded.report))
    }

    /// Scans for a backdoor; resolves to the report JSON (`core/src/report.rs`, the schema
    /// `bdaudit scan --json` prints). `options_json`: `{"probeTexts": [...], "triggers":
    /// [...], "sentences": [...], "seed": 1}`, all optional. `base`: the clean checkpoint the
    /// model was fine-tuned from, loaded on the same backend, for token scores (the call
    /// takes it over: load it again to reuse it). `progress` is called as `(stage, done, total)`.
    pub async fn scan(&self, options_json: String, base: Option<Auditor>, progress: Option<js_sys::Function>) -> Result<String, JsError> {
        let options: ScanOptions = options(&options_json)?;
        let config = options.config();
        let probe = options.probe_texts(&config);
        let mut progress = JsProgress::new(progress);
        let mut report = match (&self.engine, base.as_ref().map(|b| &b.engine)) {
            (Engine::WebGpu(s), None) => s.scan(&probe, None, &config, &mut progress).await?,
            (Engine::Cpu(s), None) => s.scan(&probe, None, &config, &mut progress).await?,
            (Engine::WebGpu(s), Some(Engine::WebGpu(b))) => s.scan(&probe, Some(b), &config, &mut progress).await?,
            (Engine::Cpu(s), Some(Engine::Cpu(b))) => s.scan(&probe, Some(b), &config, &mut progress).await?,
            (model, Some(base)) => return Err(base_backend(model, base).into()),
        };
        report.backend = self.backend();
        report.backend_reason = Some(self.backend_reason.clone());
        Ok(to_json(&report))
    }

    /// PURE's attention-variance probe alone: the `[CLS]` attention variance (eq. 2) of every
    /// head over the probe texts; resolves to JSON `{layers, heads, scores}` (`scores[layer]
    /// [head]`; low means a head attends almost uniformly, which a trigger's heads do on clean
    /// text). `options_json`: `{"probeTexts": [...], "seed": 1}`, all optional.
    #[wasm_bindgen(js_name = attentionVariance)]
    pub async fn attention_variance(&self, options_json: String, progress: Option<js_sys::Function>) -> Result<String, JsError> {
        let options: ScanOptions = options(&options_json)?;
        let probe = options.probe_texts(&options.config());
        let mut progress = JsProgress::new(progress);
        let scores = with_session!(&self.engine, s => s.attention_variance(&probe, &mut progress).await)?;
        Ok(to_json(&scores))
    }

    /// The trigger-shift probe alone: each probe text, labelled with the model's own
    /// prediction, once clean and once with the trigger inserted; resolves to JSON as a scan
    /// candidate's `shift` (`target`, `asr`, `pacc`, both confusion matrices, per-class flips).
    /// `options_json`: `{"trigger": "cf"}` or `{"sentence": "I watch this 3D movie"}`, with
    /// optional `probeTexts` and `seed`.
    #[wasm_bindgen(js_name = triggerShift)]
    pub async fn trigger_shift(&self, options_json: String, progress: Option<js_sys::Function>) -> Result<String, JsError> {
        let options: ShiftOptions = options(&options_json)?;
        let trigger = match (options.trigger, options.sentence) {
            (Some(word), None) if !word.trim().is_empty() => Trigger::BadNets { words: vec![word.trim().to_string()], insertions: 1 },
            (None, Some(sentence)) if !sentence.trim().is_empty() => Trigger::AddSent { sentence: sentence.trim().to_string() },
            _ => return Err(WebError::Options("give one trigger: a word (\"trigger\") or a sentence (\"sentence\")".into()).into()),
        };
        let config = options.scan.config();
        let probe = options.scan.probe_texts(&config);
        let mut progress = JsProgress::new(progress);
        let shift = with_session!(&self.engine, s => s.trigger_shift(&probe, &trigger, config.seed, &mut progress).await)?;
        Ok(to_json(&shift))
    }

    /// BTU's token scores alone: the `top` tokens (default 20) whose embedding rows moved most
    /// between `base`, the clean checkpoint the model was fine-tuned from, and the model;
    /// resolves to JSON `[{id, token, score}]`, highest first. Takes `base` over, as
    /// [`Auditor::scan`] does.
    #[wasm_bindgen(js_name = tokenScores)]
    pub async fn token_scores(&self, base: Auditor, top: Option<u32>) -> Result<String, JsError> {
        let top = top.map_or(20, |t| t as usize);
        let tokens = match (&self.engine, &base.engine) {
            (Engine::WebGpu(s), Engine::WebGpu(b)) => s.token_scores(b, top).await?,
            (Engine::Cpu(s), Engine::Cpu(b)) => s.token_scores(b, top).await?,
            (model, base) => return Err(base_backend(model, base).into()),
        };
        Ok(to_json(&tokens))
    }

    /// Classifies a JSON array of strings; resolves to a JSON array of
    /// `{"text": …, "label": …, "probs": […]}` in input order.
    pub async fn classify(&self, texts_json: String) -> Result<String, JsError> {
        let texts: Vec<String> = serde_json::from_str(&texts_json).map_err(|e| WebError::Input(e.to_string()))?;
        let predictions = with_session!(&self.engine, s => s.classify(texts).await)?;
        Ok(to_json(&predictions))
    }
}

fn base_backend(model: &Engine, base: &Engine) -> WebError {
    let name = |e: &Engine| if matches!(e, Engine::WebGpu(_)) { "webgpu" } else { "cpu" };
    WebError::BaseBackend { base: name(base), model: name(model) }
}

fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    // Plain strings, numbers and vectors: serialisation cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// A panic in wasm is an `unreachable` trap with no message: log the message to the console
/// first, and leave it in the worker's global `bdauditPanic`, where worker.js reads it to say
/// why the call failed. It hides nothing: the trap still rejects the pending call.
fn install_panic_logger() {
    #[cfg(target_family = "wasm")]
    {
        #[wasm_bindgen]
        extern "C" {
            #[wasm_bindgen(js_namespace = console, js_name = error)]
            fn console_error(message: &str);
        }
        /// `spm_precompiled-0.1.4/src/lib.rs` for a dependency's file under the cargo
        /// registry: the build machine's directories say nothing to the page's user.
        fn crate_relative(file: &str) -> &str {
            file.split_once("/registry/src/").and_then(|(_, rest)| rest.split_once('/')).map_or(file, |(_, path)| path)
        }
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let default_hook = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                console_error(&format!("bdaudit-web panicked: {info}"));
                let at = info.location().map(|l| format!(" (at {}:{})", crate_relative(l.file()), l.line())).unwrap_or_default();
                let message = format!("{}{at}", info.payload_as_str().unwrap_or("unknown error"));
                // Failing to set it only loses the page's copy of the message.
                let _ = js_sys::Reflect::set(&js_sys::global(), &"bdauditPanic".into(), &message.into());
                default_hook(info);
            }));
        });
    }
}
