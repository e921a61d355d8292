//! What the golden-vector tests share.

use std::path::Path;

use serde_json::Value;

/// Checks that the committed vectors at `path` are exactly `generated`. A
/// file that does not exist yet is written first when `VERITRAIL_BLESS` is
/// set; an existing one is never overwritten: formats never change in
/// place, new vectors go beside the old.
pub fn assert_committed(path: &Path, generated: &Value) {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    if !path.exists() && std::env::var_os("VERITRAIL_BLESS").is_some() {
        let mut text = serde_json::to_string_pretty(generated).expect("json");
        text.push('\n');
        std::fs::write(path, text).unwrap_or_else(|e| panic!("write {name}: {e}"));
    }
    let committed = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{} is missing ({e}); run with VERITRAIL_BLESS=1 once",
            path.display()
        )
    });
    let committed: Value =
        serde_json::from_str(&committed).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
    assert!(
        committed == *generated,
        "the formats changed: testdata/{name} no longer matches what this code produces"
    );
}
