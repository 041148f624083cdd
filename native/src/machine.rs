//! What a report was computed on. Times (and, at the last digit, scores) depend on the CPU,
//! the backend and, on the CPU backend, OpenBLAS's kernels (the generic fallback trains
//! 1.5–1.8x slower). Every report that carries times or scores records this, so a table built
//! from reports names the machine that made them, not the one that printed it.

use std::sync::OnceLock;

use anyhow::Result;
use serde::Serialize;

static DEVICE: OnceLock<&'static str> = OnceLock::new();

/// Records the `--device` this process computes on; the first call wins.
pub fn set_device(device: &'static str) {
    let _ = DEVICE.set(device);
}

/// The `--device` this process computes on.
pub fn device() -> &'static str {
    DEVICE.get().copied().unwrap_or("cpu")
}

#[derive(Serialize, Debug)]
pub struct Machine {
    /// `model name` of /proc/cpuinfo; "unknown" where there is none.
    pub cpu: String,
    /// The CPUs this process may use.
    pub cpus: usize,
    pub arch: &'static str,
    /// The `--device` the command ran on.
    pub device: &'static str,
    /// OpenBLAS's kernel set, when the device is the CPU and this build multiplies with it.
    pub openblas: Option<String>,
    /// The NVIDIA driver's name for the first GPU, on the cuda device.
    pub gpu: Option<String>,
    pub bdaudit: &'static str,
}

impl Machine {
    pub fn here() -> Self {
        let device = device();
        Machine {
            cpu: cpu_model().unwrap_or_else(|| "unknown".into()),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            arch: std::env::consts::ARCH,
            device,
            openblas: if device == "cpu" { openblas_core() } else { None },
            gpu: if device == "cuda" { nvidia_gpu() } else { None },
            bdaudit: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// `report` as a JSON object with a `machine` field added.
pub fn stamped<T: Serialize>(report: &T) -> Result<serde_json::Value> {
    let mut value = serde_json::to_value(report)?;
    if let serde_json::Value::Object(map) = &mut value {
        map.insert("machine".into(), serde_json::to_value(Machine::here())?);
    }
    Ok(value)
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string())
}

fn nvidia_gpu() -> Option<String> {
    let mut gpus: Vec<_> = std::fs::read_dir("/proc/driver/nvidia/gpus").ok()?.flatten().map(|e| e.path()).collect();
    gpus.sort();
    let info = std::fs::read_to_string(gpus.first()?.join("information")).ok()?;
    info.lines().find_map(|l| l.strip_prefix("Model:")).map(|m| m.trim().to_string())
}

#[cfg(feature = "openblas")]
pub fn openblas_core() -> Option<String> {
    Some(crate::blas::core_name())
}

#[cfg(not(feature = "openblas"))]
pub fn openblas_core() -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Report {
        seconds: f64,
    }

    #[test]
    fn a_stamped_report_keeps_its_fields_and_names_this_machine() {
        let value = stamped(&Report { seconds: 1.5 }).unwrap();
        assert_eq!(value["seconds"], 1.5);
        let machine = &value["machine"];
        assert_eq!(machine["arch"], std::env::consts::ARCH);
        assert!(machine["cpus"].as_u64().unwrap() >= 1);
        assert_eq!(machine["bdaudit"], env!("CARGO_PKG_VERSION"));
        assert_eq!(machine["openblas"].is_string(), cfg!(feature = "openblas") && machine["device"] == "cpu");
    }
}
