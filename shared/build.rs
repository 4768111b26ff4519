//! The built-in provider catalog is written in TOML for people and shipped as JSON for the
//! binaries: every cold start reads it, and JSON deserializes about four times faster.

use std::path::Path;

fn main() {
    let source = "src/provider/builtin.toml";
    println!("cargo::rerun-if-changed={source}");
    let text = std::fs::read_to_string(source).expect("read the built-in catalog");
    let value: toml::Value =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{source} is not valid TOML: {e}"));
    let json = serde_json::to_string(&value).expect("the catalog as JSON");
    let out = std::env::var("OUT_DIR").expect("OUT_DIR");
    std::fs::write(Path::new(&out).join("builtin.json"), json).expect("write builtin.json");
}
