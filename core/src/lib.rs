//! bdaudit-core: find and remove backdoors in BERT-family text classifiers.
//!
//! Backend-agnostic (generic over burn's `Backend`) and free of files, threads and clocks, so
//! the same code runs in the `bdaudit` CLI (CPU, wgpu, CUDA) and in the browser (WebGPU).

pub mod attack;
pub mod augment;
pub mod checkpoint;
pub mod data;
pub mod defense;
pub mod eval;
pub mod metrics;
pub mod model;
pub mod probe;
pub mod progress;
mod quote;
pub mod report;
pub mod rng;
pub mod scan;
pub mod train;
