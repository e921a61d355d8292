//! The crate's modules read bottom-up, in the order the crate documentation
//! lists them (`src/lib.rs`, "Layers"): each module names only modules listed
//! before it. A circle between files crept in once (issue #16); this keeps the
//! list and the code from drifting apart again.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The modules of the "Layers" list in `src/lib.rs`, bottom first.
fn documented_layers(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|line| {
            let item = line.strip_prefix("//! ")?.trim_start();
            let (number, rest) = item.split_once(". `")?;
            number.parse::<u32>().ok()?;
            let name = rest.split('`').next()?;
            Some(name.trim_end_matches('/').to_owned())
        })
        .collect()
}

/// The modules `src/lib.rs` declares, but `golden`: a test module that checks
/// the formats of every layer from above them all.
fn declared_modules(lib: &str) -> BTreeSet<String> {
    lib.lines()
        .filter_map(|line| {
            let line = line.trim().trim_start_matches("pub ");
            let name = line.strip_prefix("mod ")?.strip_suffix(';')?;
            (name != "golden").then(|| name.to_owned())
        })
        .collect()
}

/// The source files of a module: its file, or every file of its folder.
fn module_files(src: &Path, name: &str) -> Vec<PathBuf> {
    let file = src.join(format!("{name}.rs"));
    if file.exists() {
        return vec![file];
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(src.join(name))
        .unwrap_or_else(|e| panic!("module {name} has neither a file nor a folder: {e}"))
        .map(|entry| entry.expect("a folder entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .collect();
    files.sort();
    files
}

/// The first path segment after every `crate::` in code (comments skipped).
fn crate_paths(source: &str) -> Vec<String> {
    source
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .flat_map(|line| {
            line.match_indices("crate::")
                .map(move |(at, _)| &line[at + 7..])
        })
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '{')
                .collect()
        })
        .collect()
}

#[test]
fn each_module_uses_only_the_layers_below_it() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(root.join("lib.rs")).expect("lib.rs");
    let layers = documented_layers(&lib);
    let listed: BTreeSet<String> = layers.iter().cloned().collect();
    assert_eq!(
        listed,
        declared_modules(&lib),
        "the Layers list in lib.rs must name every module exactly once"
    );
    assert_eq!(listed.len(), layers.len(), "a module is listed twice");

    let mut wrong = Vec::new();
    for (level, name) in layers.iter().enumerate() {
        for file in module_files(&root, name) {
            let source = std::fs::read_to_string(&file).expect("a source file");
            for used in crate_paths(&source) {
                let at = layers.iter().position(|l| *l == used);
                match at {
                    Some(at) if at <= level => {}
                    Some(_) => wrong.push(format!(
                        "{} (layer {name}) uses {used}, listed above it",
                        file.display()
                    )),
                    None => wrong.push(format!(
                        "{} (layer {name}) uses crate::{used}, which is not a layer (the crate \
                         root re-exports only for users outside)",
                        file.display()
                    )),
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
