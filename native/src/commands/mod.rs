pub mod attack;
pub mod demo;
pub mod eval;
pub mod train;
