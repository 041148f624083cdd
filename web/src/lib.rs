//! bdaudit in the browser: a wasm-bindgen API over `bdaudit-core`.
//!
//! ```js
//! import init, { Auditor } from "./pkg/bdaudit_web.js";
//! await init();
//! const auditor = await Auditor.load(modelBytes, configBytes, tokenizerBytes, true);
//! auditor.backend();                          // "webgpu" or "cpu"
//! JSON.parse(await auditor.classify(JSON.stringify(["a fine film"])));
//! // [{ text: "a fine film", label: "1", probs: [0.1, 0.9] }]
//! ```
//!
//! The backend is chosen once, at load: WebGPU (burn-wgpu) when asked for and available,
//! otherwise burn-ndarray on the CPU. Both run the same generic [`session::Session`].
//! Failures are `Error`s carrying the core's typed message.

mod device;
pub mod session;

use bdaudit_core::checkpoint::{CheckpointError, CheckpointFiles, TokenizerError};
use burn::backend::{NdArray, Wgpu};
use wasm_bindgen::prelude::*;

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
    #[error("could not read results from the device: {0}")]
    Execution(String),
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
}

#[wasm_bindgen]
impl Auditor {
    /// Loads `model.safetensors`, `config.json` and `tokenizer.json` (as bytes). With
    /// `prefer_gpu` the model goes to WebGPU when `navigator.gpu` has an adapter, else to
    /// the CPU. `num_labels` is only needed for a checkpoint without a classifier head (a
    /// bare encoder gets a new, seeded head of that many classes); with a head it must match.
    pub async fn load(
        model: Vec<u8>,
        config: Vec<u8>,
        tokenizer: Vec<u8>,
        prefer_gpu: bool,
        num_labels: Option<u32>,
    ) -> Result<Auditor, JsError> {
        install_panic_logger();
        let files = CheckpointFiles {
            model,
            config,
            tokenizer,
        };
        let num_labels = num_labels.map(|n| n as usize);
        let gpu = if prefer_gpu {
            device::gpu_device().await
        } else {
            None
        };
        let engine = match gpu {
            Some(device) => Engine::WebGpu(Session::load(&files, num_labels, device)?),
            None => Engine::Cpu(Session::load(&files, num_labels, Default::default())?),
        };
        Ok(Auditor { engine })
    }

    /// `"webgpu"` or `"cpu"`: where this model runs.
    pub fn backend(&self) -> String {
        match self.engine {
            Engine::WebGpu(_) => "webgpu",
            Engine::Cpu(_) => "cpu",
        }
        .to_string()
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

    /// Classifies a JSON array of strings; resolves to a JSON array of
    /// `{"text": …, "label": …, "probs": […]}` in input order.
    pub async fn classify(&self, texts_json: String) -> Result<String, JsError> {
        let texts: Vec<String> =
            serde_json::from_str(&texts_json).map_err(|e| WebError::Input(e.to_string()))?;
        let predictions = with_session!(&self.engine, s => s.classify(texts).await)?;
        Ok(to_json(&predictions))
    }
}

fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    // Plain strings, numbers and vectors: serialisation cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// A panic in wasm is an `unreachable` trap with no message: log the message to the console
/// first. It hides nothing: the trap still rejects the pending call.
fn install_panic_logger() {
    #[cfg(target_family = "wasm")]
    {
        #[wasm_bindgen]
        extern "C" {
            #[wasm_bindgen(js_namespace = console, js_name = error)]
            fn console_error(message: &str);
        }
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let default_hook = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                console_error(&format!("bdaudit-web panicked: {info}"));
                default_hook(info);
            }));
        });
    }
}
