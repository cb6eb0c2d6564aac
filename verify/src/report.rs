//! Report writers: what a person or a CI system reads. Each writer takes
//! the library's results (a summary, a trace, verdicts, a kernel run) and
//! returns text; the command line only picks one and prints it.

pub mod check;
pub mod diff;
pub mod dot;
pub mod gate;
pub mod junit;
pub mod kernel;
pub mod markdown;
pub mod sarif;
pub mod style;
pub mod summary;
pub mod text;
