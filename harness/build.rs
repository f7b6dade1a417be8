//! Rebuild when a bundled sample changes: `include_dir!` (samples.rs) cannot tell cargo itself.
fn main() {
    println!("cargo::rerun-if-changed=../sample-tests");
}
