//! OpenBLAS's kernel choice on CPUs it does not know.
//!
//! OpenBLAS (built with DYNAMIC_ARCH, as Debian ships it) picks its kernels from the CPU model
//! when the library loads, before `main`. Debian 12's 0.3.21 does not know CPUs newer than it
//! (an Intel Xeon reporting family 6, model 207, for one) and falls back to its generic SSE3
//! kernels, "Prescott", on CPUs with AVX-512: a one-epoch MiniLM training command took 78–91 s
//! there (its training 48–58 s) instead of 50 s (32 s) with the AVX-512 kernels
//! (docs/benchmarks.md). The only override is the
//! `OPENBLAS_CORETYPE` environment variable, read at that load, so bdaudit re-executes itself
//! once with it set when it finds the fallback on a CPU that runs better kernels.

use std::ffi::{c_char, CStr};

#[link(name = "openblas")]
extern "C" {
    fn openblas_get_corename() -> *const c_char;
}

/// The variable OpenBLAS reads at load time to force a kernel set.
pub const CORETYPE_VAR: &str = "OPENBLAS_CORETYPE";

/// The kernel set OpenBLAS chose for this process.
pub fn core_name() -> String {
    // SAFETY: OpenBLAS returns a pointer to a static NUL-terminated string (never null).
    unsafe { CStr::from_ptr(openblas_get_corename()) }.to_string_lossy().into_owned()
}

/// The kernel set to ask for instead of `detected`, when `detected` is OpenBLAS's generic
/// fallback and this CPU runs a better one. Only kernels whose instructions the CPU reports
/// are named: a forced kernel the CPU lacks would crash on its first matrix product.
pub fn better_core(detected: &str) -> Option<&'static str> {
    if detected != "Prescott" {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512cd") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl") {
            return Some("SkylakeX");
        }
        if has!("avx2") && has!("fma") {
            return Some("Haswell");
        }
    }
    None
}

/// Re-executes this program with `OPENBLAS_CORETYPE` set when OpenBLAS fell back to its generic
/// kernels on a CPU that runs better ones. Returns only when no restart is needed (the caller
/// set the variable, or the detected kernels are already specific) or when it failed, which
/// costs speed, not correctness, so the run goes on with a note.
#[cfg(unix)]
pub fn restart_with_better_kernels() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(CORETYPE_VAR).is_some() {
        return;
    }
    let detected = core_name();
    let Some(better) = better_core(&detected) else { return };
    let error = match std::env::current_exe() {
        Ok(exe) => std::process::Command::new(exe).args(std::env::args_os().skip(1)).env(CORETYPE_VAR, better).exec(),
        Err(e) => e,
    };
    eprintln!("note: OpenBLAS runs its generic {detected} kernels; restarting with {CORETYPE_VAR}={better} failed ({error}): set it to train faster");
}

#[cfg(not(unix))]
pub fn restart_with_better_kernels() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_generic_fallback_is_overridden() {
        for specific in ["SkylakeX", "Haswell", "Zen", "SapphireRapids", "Cooperlake"] {
            assert_eq!(better_core(specific), None, "{specific}");
        }
    }

    #[test]
    fn the_library_reports_a_kernel() {
        assert!(!core_name().is_empty());
    }
}
