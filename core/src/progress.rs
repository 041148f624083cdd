//! Progress events from long computations, so the CLI can draw bars and the browser can post
//! messages without the core knowing about either.

/// Receives progress of a named stage made of `total` steps.
pub trait Progress {
    fn start(&mut self, stage: &str, total: usize);
    /// One step done; `loss` when the step was a training step.
    fn step(&mut self, loss: Option<f64>);
    fn finish(&mut self, summary: &str);
}

/// Ignores every event.
pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _stage: &str, _total: usize) {}
    fn step(&mut self, _loss: Option<f64>) {}
    fn finish(&mut self, _summary: &str) {}
}
