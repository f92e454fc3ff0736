//! Builds every connector component the tests load, from source, for
//! `wasm32-wasip2`, and writes `artifacts.rs` naming each one.
//!
//! The nested `cargo build` uses its own target directory
//! (`target/connectors`) so it never waits on the outer build's lock.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Rust connector packages of the workspace: each declares itself with
/// `[package.metadata.keyward] artifact = "CONSTANT"` in its own manifest
/// (the one list; `scripts/common.sh` reads the same), found with `cargo
/// metadata`. (constant name, package, wasm file stem)
fn rust_connectors(cargo: &str, workspace: &Path) -> Vec<(String, String, String)> {
    let output = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .output()
        .expect("cannot run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata is JSON");
    let mut connectors = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let Some(constant) = package["metadata"]["keyward"]["artifact"].as_str() else {
            continue;
        };
        let name = package["name"].as_str().unwrap_or_default();
        // The component is the cdylib (a connector) or the bin (a command).
        let stem = package["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "cdylib" || k == "bin"))
            })
            .and_then(|t| t["name"].as_str())
            .unwrap_or_else(|| panic!("{name} has no cdylib or bin target"));
        connectors.push((constant.to_string(), name.to_string(), stem.to_string()));
    }
    assert!(
        !connectors.is_empty(),
        "no package declares a keyward artifact"
    );
    connectors
}

/// (constant name, app directory, wasm file name): Python connectors, built
/// with componentize-py against `wit/` and the SDK in `sdk/python`.
const PYTHON_CONNECTORS: &[(&str, &str, &str)] = &[
    ("REDIS_PY", "examples/redis-python", "redis_python.wasm"),
    (
        "HOSTILE_PY",
        "tests/connectors/hostile-python",
        "hostile_python.wasm",
    ),
];

/// (constant name, project directory, wasm file name): TypeScript
/// connectors, built by the SDK's `keyward-componentize` (componentize-js)
/// from the project's `app.ts`.
const TYPESCRIPT_CONNECTORS: &[(&str, &str, &str)] = &[
    (
        "MARIADB_TS",
        "examples/mariadb-typescript",
        "mariadb_typescript.wasm",
    ),
    (
        "HOSTILE_TS",
        "tests/connectors/hostile-typescript",
        "hostile_typescript.wasm",
    ),
];

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .join("../..")
        .canonicalize()
        .expect("workspace root");
    for watched in [
        "guest",
        "wit",
        "examples/postgres",
        "examples/http-api",
        "examples/s3",
        "tests/connectors",
        "sdk/python/keyward_connector",
        "examples/redis-python/app.py",
        "sdk/typescript/src",
        "sdk/typescript/bin",
        "examples/mariadb-typescript/app.ts",
        "tests/connectors/hostile-typescript/app.ts",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    let target_dir = workspace.join("target/connectors");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let connectors = rust_connectors(&cargo, &workspace);
    let mut command = Command::new(&cargo);
    command
        .current_dir(&workspace)
        .args([
            "build",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "connector",
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        // The outer build's flags are for the host target, not for wasm.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_MAKEFLAGS")
        // `cargo clippy` wraps rustc; the connectors are linted separately.
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    for (_, package, _) in &connectors {
        command.args(["-p", package]);
    }
    let status = command
        .status()
        .expect("cannot run cargo to build the test connectors");
    if !status.success() {
        panic!(
            "building the test connectors failed (see cargo's output above); \
             is the wasm target installed? (`rustup target add wasm32-wasip2`)"
        );
    }
    let out_dir = target_dir.join("wasm32-wasip2/connector");
    let mut code = String::new();
    for (constant, package, stem) in &connectors {
        let path = out_dir.join(format!("{stem}.wasm"));
        assert!(exists(&path), "{package} built no {}", path.display());
        code.push_str(&format!(
            "/// The `{package}` component.\npub const {constant}: &str = {:?};\n",
            path.display().to_string()
        ));
    }
    // The Python and TypeScript components need componentize-py and the
    // SDK's Node packages, which `scripts/test.sh` installs. Without them
    // (a newcomer's plain `cargo test`), they are left unbuilt with a
    // warning, and only the tests that load them fail, naming the file;
    // under CI they are required.
    let required = std::env::var_os("CI").is_some_and(|ci| ci == "true");
    let python_ready = exists(&workspace.join("target/venv/bin/componentize-py"));
    let sdk = workspace.join("sdk/typescript");
    let typescript_ready = sdk.join("node_modules").is_dir() && sdk.join("dist").is_dir();
    let python_dir = target_dir.join("python");
    for (constant, app, file) in PYTHON_CONNECTORS {
        let path = python_dir.join(file);
        if python_ready || required {
            build_python(&workspace, app, &path);
        } else {
            println!(
                "cargo:warning={app} not built: componentize-py is not installed \
                 (scripts/test.sh installs it); tests that load it will fail"
            );
        }
        code.push_str(&format!(
            "/// The Python connector in `{app}`.\npub const {constant}: &str = {:?};\n",
            path.display().to_string()
        ));
    }
    let typescript_dir = target_dir.join("typescript");
    for (constant, project, file) in TYPESCRIPT_CONNECTORS {
        let path = typescript_dir.join(file);
        if typescript_ready || required {
            build_typescript(&workspace, project, &path);
        } else {
            println!(
                "cargo:warning={project} not built: the TypeScript SDK is not installed \
                 (scripts/test.sh installs it); tests that load it will fail"
            );
        }
        code.push_str(&format!(
            "/// The TypeScript connector in `{project}`.\npub const {constant}: &str = {:?};\n",
            path.display().to_string()
        ));
    }
    let dest =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("artifacts.rs");
    std::fs::write(dest, code).expect("cannot write artifacts.rs");
}

/// Builds the Python connector in `app` (its `app.py`) into `out` with the
/// componentize-py that `scripts/common.sh` installs in `target/venv`.
fn build_python(workspace: &Path, app: &str, out: &Path) {
    let componentize = workspace.join("target/venv/bin/componentize-py");
    assert!(
        exists(&componentize),
        "{} is missing: scripts/test.sh installs it (ensure_python_toolchain in scripts/common.sh)",
        componentize.display()
    );
    std::fs::create_dir_all(out.parent().expect("a file in a directory"))
        .expect("cannot create the Python connectors' directory");
    let output = Command::new(&componentize)
        .current_dir(workspace)
        .args([
            "-d",
            "wit",
            "-w",
            "connector",
            "componentize",
            "-p",
            "sdk/python",
            "-p",
        ])
        .arg(app)
        .arg("app")
        .arg("-o")
        .arg(out)
        .output()
        .expect("cannot run componentize-py");
    assert!(
        output.status.success(),
        "componentize-py failed for {app}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Builds the TypeScript connector in `project` into `out` with the SDK's
/// `keyward-componentize` (which resolves `keyward-connector` to itself),
/// from the SDK's installed and built packages (`scripts/common.sh`).
fn build_typescript(workspace: &Path, project: &str, out: &Path) {
    let sdk = workspace.join("sdk/typescript");
    assert!(
        sdk.join("node_modules").is_dir() && sdk.join("dist").is_dir(),
        "{} is not installed and built: scripts/test.sh does it \
         (ensure_typescript_toolchain in scripts/common.sh)",
        sdk.display()
    );
    let output = Command::new("node")
        .current_dir(workspace.join(project))
        .arg(sdk.join("bin/componentize.mjs"))
        .arg("app.ts")
        .arg("-o")
        .arg(out)
        .args(["--wit"])
        .arg(workspace.join("wit"))
        .output()
        .expect("cannot run node for keyward-componentize");
    assert!(
        output.status.success(),
        "keyward-componentize failed for {project}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn exists(path: &Path) -> bool {
    path.is_file()
}
