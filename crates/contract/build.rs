//! Compiles `proto/` into a descriptor set at build time (pure Rust, no `protoc` needed).

use std::{env, fs, path::PathBuf};

fn main() {
    let proto_root = PathBuf::from("../../proto");
    println!("cargo:rerun-if-changed=../../proto");
    let mut files: Vec<PathBuf> = Vec::new();
    collect(&proto_root, &mut files);
    files.sort();
    let relative: Vec<PathBuf> =
        files.iter().map(|f| f.strip_prefix(&proto_root).map(PathBuf::from).unwrap_or_else(|_| f.clone())).collect();
    let mut compiler = match protox::Compiler::new([&proto_root]) {
        Ok(c) => c,
        Err(e) => panic!("cannot read proto/: {e}"),
    };
    compiler.include_source_info(true).include_imports(true);
    if let Err(e) = compiler.open_files(&relative) {
        panic!("proto/ does not compile: {e:?}");
    }
    let bytes = compiler.encode_file_descriptor_set();
    let out = PathBuf::from(env::var("OUT_DIR").unwrap_or_else(|_| ".".into())).join("kefu.fds");
    if let Err(e) = fs::write(&out, bytes) {
        panic!("cannot write {}: {e}", out.display());
    }
}

fn collect(dir: &PathBuf, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
}
