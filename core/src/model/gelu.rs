//! BERT's GELU, written in tensor ops so that autodiff differentiates it exactly.
//!
//! burn 0.21's `activation::gelu` computes the exact erf form forward, but its backward
//! (`ActivationOps::gelu_backward`, which no backend overrides) is the derivative of the tanh
//! approximation: up to 8.7e-4 off the exact one (at x ≈ 2), so training took another gradient
//! than PyTorch's. Here the chain rule runs through `erf`, whose backward is exact
//! (2/√π·e^(−x²)). The forward is the same op sequence as burn's default, so outputs are
//! bit-identical; on the CPU backend a training step is also faster (burn's backward is 15
//! elementwise passes in f64 `tanh`), for autodiff keeping `erf`'s input and `1 + erf` beside
//! GELU's input (docs/benchmarks.md).

use burn::tensor::{backend::Backend, Tensor};

/// GELU(x) = x · (1 + erf(x / √2)) / 2.
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let phi = x.clone().div_scalar(std::f64::consts::SQRT_2).erf().add_scalar(1);
    (x * phi).div_scalar(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::tensor::{activation, Distribution, TensorData};

    type Cpu = NdArray;

    fn exact_derivative(x: f64) -> f64 {
        let pdf = (-x * x / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
        0.5 * (1.0 + series_erf(x / std::f64::consts::SQRT_2)) + x * pdf
    }

    /// erf by its Maclaurin series, in f64: the reference must not share the code under test.
    fn series_erf(x: f64) -> f64 {
        let (mut term, mut sum) = (x, x);
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        2.0 / std::f64::consts::PI.sqrt() * sum
    }

    #[test]
    fn forward_is_bit_identical_to_burns() {
        let x = Tensor::<Cpu, 2>::random([64, 37], Distribution::Normal(0.0, 3.0), &Default::default());
        gelu(x.clone()).into_data().assert_eq(&activation::gelu(x).into_data(), true);
    }

    /// Largest distance of `f`'s autodiff gradient from GELU's exact derivative on [−4, 4].
    fn gradient_error(f: fn(Tensor<Autodiff<Cpu>, 1>) -> Tensor<Autodiff<Cpu>, 1>) -> f64 {
        let points: Vec<f32> = (-40..=40).map(|i| i as f32 / 10.0).collect();
        let x = Tensor::<Autodiff<Cpu>, 1>::from_data(TensorData::from(points.as_slice()), &Default::default()).require_grad();
        let grads = f(x.clone()).sum().backward();
        let grad: Vec<f32> = x.grad(&grads).unwrap().into_data().to_vec().unwrap();
        points.iter().zip(&grad).map(|(&p, &g)| (g as f64 - exact_derivative(p as f64)).abs()).fold(0.0, f64::max)
    }

    #[test]
    fn gradient_is_the_exact_derivative() {
        let ours = gradient_error(gelu);
        assert!(ours < 1e-5, "largest error of the gradient {ours}");
        // burn's own backward is the tanh approximation's derivative: the test can tell them apart.
        let burns = gradient_error(activation::gelu);
        assert!(burns > 1e-4, "burn's gelu_backward is exact now ({burns}): this module can go");
    }
}
