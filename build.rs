//! Rebuilds the crate when anything under `ui/` changes. `include_dir!`
//! tracks the files it embedded, but not a file added later; a directory
//! given to `rerun-if-changed` is scanned whole, new files included.

fn main() {
    println!("cargo:rerun-if-changed=ui");
}
