//! The GPU device: initialised once, on first use, with burn-wgpu's async setup.
//!
//! In the browser, `init_setup_async::<WebGpu>` panics (an `unreachable` trap in wasm, which
//! cannot be caught) when there is no adapter, so the adapter is probed through
//! `navigator.gpu.requestAdapter()` first and a missing one means "use the CPU".

use burn::backend::wgpu::WgpuDevice;

/// The initialised WebGPU device, or `None` when this browser (or worker) has none.
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
        cell.borrow_mut()
            .get_or_insert_with(|| {
                future_to_promise(async { Ok(JsValue::from_bool(init_webgpu().await)) })
            })
            .clone()
    });
    let ready = JsFuture::from(init).await.ok()?.as_bool() == Some(true);
    ready.then(WgpuDevice::default)
}

#[cfg(target_family = "wasm")]
async fn init_webgpu() -> bool {
    use burn::backend::wgpu::{graphics::WebGpu, init_setup_async, RuntimeOptions};

    if !webgpu_adapter_available().await {
        return false;
    }
    init_setup_async::<WebGpu>(&WgpuDevice::default(), RuntimeOptions::default()).await;
    true
}

/// `await navigator.gpu?.requestAdapter()` is an adapter; works in windows and workers.
#[cfg(target_family = "wasm")]
async fn webgpu_adapter_available() -> bool {
    use js_sys::{Function, Promise, Reflect};
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;

    let get = |target: &JsValue, key: &str| {
        Reflect::get(target, &JsValue::from_str(key))
            .ok()
            .filter(|v| !v.is_undefined() && !v.is_null())
    };
    let Some(gpu) = get(&js_sys::global(), "navigator").and_then(|nav| get(&nav, "gpu")) else {
        return false;
    };
    let Some(request) = get(&gpu, "requestAdapter").and_then(|f| f.dyn_into::<Function>().ok())
    else {
        return false;
    };
    let Some(pending) = request
        .call0(&gpu)
        .ok()
        .and_then(|p| p.dyn_into::<Promise>().ok())
    else {
        return false;
    };
    matches!(JsFuture::from(pending).await, Ok(adapter) if !adapter.is_null() && !adapter.is_undefined())
}

/// Natively (tests, `cargo check`) the GPU is any adapter wgpu finds (Vulkan, Metal, …,
/// lavapipe on CI). Setup panics without one; natively that unwinds and means "no GPU".
#[cfg(not(target_family = "wasm"))]
pub async fn gpu_device() -> Option<WgpuDevice> {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::OnceLock;

    use burn::backend::wgpu::{graphics::AutoGraphicsApi, init_setup, RuntimeOptions};

    static READY: OnceLock<bool> = OnceLock::new();
    let ready = *READY.get_or_init(|| {
        let device = WgpuDevice::default();
        catch_unwind(AssertUnwindSafe(|| {
            init_setup::<AutoGraphicsApi>(&device, RuntimeOptions::default())
        }))
        .is_ok()
    });
    ready.then(WgpuDevice::default)
}
