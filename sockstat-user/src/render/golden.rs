//! Golden-file checks for the printers' tests. `UPDATE_GOLDEN=1 cargo test` rewrites the
//! files after a deliberate change; otherwise any difference fails the test.

/// Compares `actual` with `src/render/<path>`.
pub fn check(path: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/render")
        .join(path);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create)",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs from the golden file:\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}
