fn main() {
    std::process::exit(netta::app::main());
}
