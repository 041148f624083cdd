pub mod attack;
pub mod bench;
pub mod demo;
pub mod eval;
pub mod predict;
pub mod purify;
pub mod scan;
pub mod train;
