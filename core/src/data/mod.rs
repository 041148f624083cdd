//! Data sets: parsing text-classification files, label sets, seeded splits, and
//! batching for the model.

pub mod batch;
pub mod demo;
pub mod text;

pub use text::*;
