//! `bdaudit info`: what this build can run on, and which BLAS kernels the CPU backend uses.

use anyhow::Result;
use serde::Serialize;

#[derive(Serialize)]
struct Info {
    version: &'static str,
    /// The `--device` values this build accepts.
    devices: Vec<&'static str>,
    /// Present when the CPU backend multiplies matrices with OpenBLAS.
    openblas: Option<OpenBlas>,
}

#[derive(Serialize)]
struct OpenBlas {
    /// The kernel set OpenBLAS runs in this process.
    core: String,
    /// `OPENBLAS_CORETYPE` as this process saw it: set by the caller, or by bdaudit's restart
    /// when OpenBLAS did not know the CPU (`blas.rs`). Other programs linking OpenBLAS on this
    /// machine (the test binaries) run faster with it exported.
    coretype: Option<String>,
}

pub fn run(json: bool) -> Result<()> {
    let devices = [
        ("cpu", cfg!(feature = "cpu")),
        ("flex", cfg!(feature = "flex")),
        ("wgpu", cfg!(feature = "wgpu")),
        ("cuda", cfg!(feature = "cuda")),
    ];
    let info = Info {
        version: env!("CARGO_PKG_VERSION"),
        devices: devices.into_iter().filter_map(|(name, built)| built.then_some(name)).collect(),
        openblas: openblas(),
    };
    if json {
        println!("{}", serde_json::to_string(&info)?);
        return Ok(());
    }
    println!("bdaudit {}", info.version);
    println!("devices: {}", info.devices.join(", "));
    match &info.openblas {
        Some(o) => println!("OpenBLAS kernels: {} (OPENBLAS_CORETYPE {})", o.core, o.coretype.as_deref().unwrap_or("unset")),
        None => println!("OpenBLAS: not in this build (pure-Rust matrix products)"),
    }
    Ok(())
}

#[cfg(feature = "openblas")]
fn openblas() -> Option<OpenBlas> {
    Some(OpenBlas { core: crate::blas::core_name(), coretype: std::env::var(crate::blas::CORETYPE_VAR).ok() })
}

#[cfg(not(feature = "openblas"))]
fn openblas() -> Option<OpenBlas> {
    None
}
