fn main() -> std::process::ExitCode {
    broodlink::cli::main()
}
