use std::process::ExitCode;

fn main() -> ExitCode {
    scrim::cli::main()
}
