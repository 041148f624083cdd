//! The WebGPU adapter, and the GPU device: initialised once, on first use, with burn-wgpu's
//! async setup.
//!
//! In the browser, `init_setup_async::<WebGpu>` panics (an `unreachable` trap in wasm, which
//! cannot be caught) when there is no adapter, so the adapter is probed through
//! `navigator.gpu.requestAdapter()` first and a missing one means "use the CPU".

use burn::backend::wgpu::WgpuDevice;
use serde::Serialize;

/// A WebGPU adapter as the browser describes it (`GPUAdapterInfo`).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdapterInfo {
    pub vendor: String,
    pub architecture: String,
    pub description: String,
    /// The browser's own flag for an adapter that trades speed for availability (Chrome's
    /// SwiftShader).
    pub is_fallback_adapter: bool,
}

/// Names of GPUs emulated on the CPU: Chrome's SwiftShader, Mesa's llvmpipe/lavapipe and
/// Windows' WARP. A browser does not always flag them as fallback adapters.
const SOFTWARE_RENDERERS: [&str; 4] = ["swiftshader", "llvmpipe", "lavapipe", "microsoft basic render"];

impl AdapterInfo {
    /// A GPU emulated on the CPU: on MiniLM it is far slower than burn-ndarray on the same
    /// cores (docs/benchmarks.md).
    pub fn is_software(&self) -> bool {
        let names = [&self.vendor, &self.architecture, &self.description].map(|s| s.to_lowercase());
        self.is_fallback_adapter || SOFTWARE_RENDERERS.iter().any(|r| names.iter().any(|n| n.contains(r)))
    }
}

impl std::fmt::Display for AdapterInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<&str> =
            [&self.vendor, &self.architecture, &self.description].into_iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
        let name = if parts.is_empty() { "unnamed adapter".to_string() } else { parts.join(" ") };
        if self.is_fallback_adapter {
            write!(f, "{name}, isFallbackAdapter")
        } else {
            f.write_str(&name)
        }
    }
}

/// What `navigator.gpu` offers.
#[derive(Debug, Clone)]
pub enum Probe {
    /// No `navigator.gpu`: the browser has no WebGPU, or the page is not a secure context.
    // Natively there is no `navigator` to lack it; only the wasm probe says this.
    #[cfg_attr(not(target_family = "wasm"), allow(dead_code))]
    NoWebGpu,
    /// WebGPU exists but `requestAdapter()` found nothing.
    NoAdapter,
    Adapter(AdapterInfo),
}

/// Asks `navigator.gpu.requestAdapter()` (windows and workers alike) what adapter there is.
#[cfg(target_family = "wasm")]
pub async fn probe() -> Probe {
    use js_sys::{Function, Promise, Reflect};
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;

    let get =
        |target: &JsValue, key: &str| Reflect::get(target, &JsValue::from_str(key)).ok().filter(|v| !v.is_undefined() && !v.is_null());
    let Some(gpu) = get(&js_sys::global(), "navigator").and_then(|nav| get(&nav, "gpu")) else {
        return Probe::NoWebGpu;
    };
    let Some(request) = get(&gpu, "requestAdapter").and_then(|f| f.dyn_into::<Function>().ok()) else {
        return Probe::NoWebGpu;
    };
    let Some(pending) = request.call0(&gpu).ok().and_then(|p| p.dyn_into::<Promise>().ok()) else {
        return Probe::NoAdapter;
    };
    let adapter = match JsFuture::from(pending).await {
        Ok(a) if !a.is_null() && !a.is_undefined() => a,
        _ => return Probe::NoAdapter,
    };
    // `adapter.info` (Chrome 127+); `isFallbackAdapter` moved there from the adapter itself.
    let info = get(&adapter, "info").unwrap_or(JsValue::UNDEFINED);
    let text = |key| get(&info, key).and_then(|v| v.as_string()).unwrap_or_default();
    let fallback =
        get(&info, "isFallbackAdapter").or_else(|| get(&adapter, "isFallbackAdapter")).and_then(|v| v.as_bool()).unwrap_or(false);
    Probe::Adapter(AdapterInfo {
        vendor: text("vendor"),
        architecture: text("architecture"),
        description: text("description"),
        is_fallback_adapter: fallback,
    })
}

/// The initialised WebGPU device, or `None` when this browser (or worker) has no adapter.
/// Concurrent and repeated calls share one initialisation.
#[cfg(target_family = "wasm")]
pub async fn gpu_device() -> Option<WgpuDevice> {
    use std::cell::RefCell;

    use js_sys::Promise;
    use wasm_bindgen::JsValue;
    use wasm_bindgen_futures::{future_to_promise, JsFuture};

    thread_local! {
        // A JS promise is a future that any number of callers can await.
        static INIT: RefCell<Option<Promise>> = const { RefCell::new(None) };
    }
    let init = INIT.with(|cell| {
        cell.borrow_mut().get_or_insert_with(|| future_to_promise(async { Ok(JsValue::from_bool(init_webgpu().await)) })).clone()
    });
    let ready = JsFuture::from(init).await.ok()?.as_bool() == Some(true);
    ready.then(WgpuDevice::default)
}

#[cfg(target_family = "wasm")]
async fn init_webgpu() -> bool {
    use burn::backend::wgpu::{graphics::WebGpu, init_setup_async, RuntimeOptions};

    if !matches!(probe().await, Probe::Adapter(_)) {
        return false;
    }
    init_setup_async::<WebGpu>(&WgpuDevice::default(), RuntimeOptions::default()).await;
    true
}

/// Natively (`cargo check`, tests) the adapter is whatever wgpu finds (Vulkan, Metal, …,
/// lavapipe on CI); its name is all wgpu reports that matters here. Setup panics without
/// one; natively that unwinds and means "no adapter".
#[cfg(not(target_family = "wasm"))]
pub async fn probe() -> Probe {
    native_setup().clone().map_or(Probe::NoAdapter, Probe::Adapter)
}

#[cfg(not(target_family = "wasm"))]
pub async fn gpu_device() -> Option<WgpuDevice> {
    native_setup().is_some().then(WgpuDevice::default)
}

#[cfg(not(target_family = "wasm"))]
fn native_setup() -> &'static Option<AdapterInfo> {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::OnceLock;

    use burn::backend::wgpu::{graphics::AutoGraphicsApi, init_setup, RuntimeOptions};

    static SETUP: OnceLock<Option<AdapterInfo>> = OnceLock::new();
    SETUP.get_or_init(|| {
        catch_unwind(AssertUnwindSafe(|| {
            let info = init_setup::<AutoGraphicsApi>(&WgpuDevice::default(), RuntimeOptions::default()).adapter.get_info();
            AdapterInfo {
                vendor: format!("{:#06x}", info.vendor),
                architecture: info.driver,
                description: info.name,
                is_fallback_adapter: false,
            }
        }))
        .ok()
    })
}
