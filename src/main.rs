fn main() {
    let code = match cairn::cli::main(std::env::args().collect()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}
