//! `natpath-kernel-helper`: the programs the kernel referee runs inside its
//! network namespaces (the IPIP relay, a pod's ports, one probe, a carrier
//! hello). See `natpath_verify::kernel::helper` for what each does and its
//! contract (JSON lines on stdout, exit when stdin closes, bounded waits).

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = natpath_verify::kernel::helper::helper_main(&args);
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}
