//! Any text as a recipe, TOML and mergekit YAML: `Recipe::parse_all` must
//! return a recipe or errors, never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = smelt::recipe::Recipe::parse_all(text, Path::new("fuzz.toml"));
    let _ = smelt::recipe::Recipe::parse_all(text, Path::new("fuzz.yaml"));
});
