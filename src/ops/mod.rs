//! Operator tools: `replay` and `resurvey`.

pub mod replay;
pub mod resurvey;
