//! The `natpath` program: the command line is defined and dispatched in
//! [`natpath_verify::cli`]; this file only turns its result into the
//! process's exit code.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(natpath_verify::cli::main())
}
