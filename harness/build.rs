//! Rebuild when a bundled sample or the Python package changes: `include_dir!` (samples.rs)
//! cannot tell cargo itself.
fn main() {
    println!("cargo::rerun-if-changed=../sample-tests");
    println!("cargo::rerun-if-changed=../python/src/eventual");
}
