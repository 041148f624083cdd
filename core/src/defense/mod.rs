//! Defenses that remove a backdoor, one module per paper.

pub mod btu;
pub mod mbtsad;
pub mod pure;
pub mod rga;

use burn::tensor::{backend::Backend, Tensor};

/// ‖d‖ from ‖d‖², as ‖d‖²/√(‖d‖² + ε): exactly 0 at d = 0 and within a relative ε/(2‖d‖²) of
/// ‖d‖ elsewhere (below f32 precision once ‖d‖ ≥ 0.003), with a finite gradient at d = 0,
/// where √'s is NaN. The defenses' norm losses start there: RGA's model equals its anchor at
/// the first step, MBTSAD's student can equal its teacher, PURE's penalty sees zero rows.
pub(crate) fn smooth_norm<B: Backend, const D: usize>(squared: Tensor<B, D>) -> Tensor<B, D> {
    const EPS: f64 = 1e-12;
    squared.clone() / (squared + EPS).sqrt()
}
