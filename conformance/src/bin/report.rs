//! Print CONFORMANCE.md: the case × engine table (Markdown) from
//! `target/conformance/*.json`. Run the adapters' suites first (`cargo test --workspace`).
fn main() {
    println!("# Conformance\n");
    println!(
        "Every case of `conformance/cases` on every engine, from `target/conformance/<engine>.json`."
    );
    println!("Regenerate with `cargo test --workspace` then");
    println!(
        "`cargo run -p dylink-conformance --bin conformance-report > CONFORMANCE.md` (CI checks it is current)."
    );
    println!("Expected failures and their reasons: `conformance/expected-failures.txt`.\n");
    print!("{}", dylink_conformance::markdown_report());
}
