//! The repository root, for the files the tests read and the scripts they run.
use std::path::Path;

/// The repository root (this crate is tests/kit).
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("tests/kit is two levels below the repository root")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_root_holds_the_siesta_package() {
        let manifest = std::fs::read_to_string(super::root().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"siesta\""), "{manifest}");
    }
}
