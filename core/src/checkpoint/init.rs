//! Seeded initialisation for parameters a checkpoint does not carry (a new classifier head,
//! tiny test models), from bdaudit's own PRNG so it is identical on every backend.

use burn::tensor::{backend::Backend, Tensor, TensorData};

use super::{CheckpointError, ParamKind, ParamSource};
use crate::rng::Rng;

/// BERT's initialisation: N(0, σ) weights, zero biases, unit LayerNorm scales.
pub struct RandomInit<B: Backend> {
    rng: Rng,
    std: f64,
    device: B::Device,
}

impl<B: Backend> RandomInit<B> {
    pub fn new(seed: u64, std: f64, device: &B::Device) -> Self {
        RandomInit { rng: Rng::new(seed), std, device: device.clone() }
    }

    fn normal(&mut self) -> f64 {
        // Box–Muller; 1 - u keeps the logarithm's argument in (0, 1].
        let u1 = 1.0 - self.rng.next_f64();
        let u2 = self.rng.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// The next tensor of this shape and kind (drawing never fails, unlike reading a file).
    pub fn draw<const D: usize>(&mut self, shape: [usize; D], kind: ParamKind) -> Tensor<B, D> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = match kind {
            ParamKind::Embedding | ParamKind::LinearWeight => (0..n).map(|_| (self.normal() * self.std) as f32).collect(),
            ParamKind::Bias => vec![0.0; n],
            ParamKind::Scale => vec![1.0; n],
        };
        Tensor::from_data(TensorData::new(data, shape), &self.device)
    }
}

impl<B: Backend> ParamSource<B> for RandomInit<B> {
    fn tensor<const D: usize>(&mut self, _name: &str, shape: [usize; D], kind: ParamKind) -> Result<Tensor<B, D>, CheckpointError> {
        Ok(self.draw(shape, kind))
    }

    fn device(&self) -> B::Device {
        self.device.clone()
    }
}
