//! The whole conformance suite on wasmer: `cargo test -p dylink-wasmer --test conformance`.

fn main() {
    std::process::exit(dylink_conformance::run_main(
        &dylink_wasmer::conformance::Wasmer,
    ));
}
