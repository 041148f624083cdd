//! Defenses that remove a backdoor, one module per paper.

pub mod btu;
pub mod pure;
pub mod rga;
