use which::which;

/// Rebuild when bpf-linker changes; fail with the fix when it is missing.
fn main() {
    match which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(_) => {
            println!("cargo:warning=bpf-linker not found: run `cargo xtask setup`");
            std::process::exit(1);
        }
    }
}
