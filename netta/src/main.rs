fn main() {
    std::process::exit(netta::main());
}
