//! The whole conformance suite on wasmtime: `cargo test -p dylink-wasmtime --test conformance`.

fn main() {
    std::process::exit(dylink_conformance::run_main(
        &dylink_wasmtime::conformance::Wasmtime::new(),
    ));
}
