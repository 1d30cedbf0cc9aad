//! Print the case × engine table (Markdown) from `target/conformance/*.json`.
//! Run the adapters' suites first: `cargo test -p dylink-wasmtime --test conformance`.
fn main() {
    print!("{}", dylink_conformance::markdown_report());
}
