//! Runs `docs/connector-guide.md`: every `sh` block, in order, in one shell
//! in an empty directory with this build's `keyward` first on PATH; each
//! `text` block right after an `sh` block lists lines (trimmed) its output
//! must contain. So the guide's commands — scaffold, native tests, the
//! wasm build, describe, render, audit, check and the error examples — are
//! exactly what an author will see.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One `sh` block and the lines expected in its output.
#[derive(Debug)]
struct Step {
    commands: String,
    expected: Vec<String>,
    line: usize,
}

/// Fenced blocks in order: (info string, body, line of the opening fence).
fn fenced_blocks(markdown: &str) -> Vec<(String, String, usize)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String, usize)> = None;
    for (index, line) in markdown.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((info.trim().to_string(), String::new(), index + 1)),
            (Some(_), Some("")) => blocks.extend(open.take()),
            (Some((_, body, _)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "unterminated code block in the guide");
    blocks
}

fn steps(markdown: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut last_was_sh = false;
    for (info, body, line) in fenced_blocks(markdown) {
        match info.as_str() {
            "sh" => steps.push(Step {
                commands: body,
                expected: Vec::new(),
                line,
            }),
            "text" if last_was_sh => {
                let step = steps.last_mut().expect("an sh block came first");
                step.expected = body
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            _ => {}
        }
        last_was_sh = info == "sh";
    }
    steps
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the host crate is in the repository")
        .to_path_buf()
}

#[test]
fn the_connector_guide_commands_work_as_shown() {
    let guide = std::fs::read_to_string(repo().join("docs/connector-guide.md")).expect("guide");
    let steps = steps(&guide);
    assert!(steps.len() >= 8, "the guide lost its commands: {steps:?}");

    // The scaffold's crate builds into a target directory kept between
    // runs (linked in after `keyward new`), so only the first run pays for
    // compiling the SDK's dependencies.
    let shared_target = repo().join("target/guide-connector");
    std::fs::create_dir_all(&shared_target).expect("shared target");
    let mut script = String::from("set -euo pipefail\nexec 2>&1\n");
    for (index, step) in steps.iter().enumerate() {
        script.push_str(&format!("echo '<<<step {index}>>>'\n"));
        for line in step.commands.lines() {
            script.push_str(line);
            script.push('\n');
            if let Some(name) = line
                .trim()
                .strip_prefix("keyward new connector ")
                .and_then(|rest| rest.split_whitespace().next())
            {
                script.push_str(&format!(
                    "ln -s '{}' {name}/target\n",
                    shared_target.display()
                ));
            }
        }
    }
    script.push_str("echo '<<<end>>>'\n");

    let bin = Path::new(env!("CARGO_BIN_EXE_keyward"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let path = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH");
    let work = tempfile::tempdir().expect("tempdir");
    let output = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(work.path())
        .env("PATH", path)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("KEYWARD_LOG")
        .output()
        .expect("run bash");
    let text = String::from_utf8_lossy(&output.stdout);

    let mut outputs: Vec<&str> = text.split("<<<step ").skip(1).collect();
    let finished = text.contains("<<<end>>>");
    if let Some(last) = outputs.last_mut() {
        *last = last.split("<<<end>>>").next().unwrap_or_default();
    }
    for (index, step) in steps.iter().enumerate() {
        let Some(out) = outputs.get(index) else {
            break;
        };
        let out = out.split_once(">>>\n").map_or(*out, |(_, rest)| rest);
        let failed_here = !finished && index + 1 == outputs.len();
        assert!(
            !failed_here,
            "the guide's block at line {} failed ({}):\n{}\n--- output ---\n{out}",
            step.line, output.status, step.commands
        );
        for line in &step.expected {
            assert!(
                out.lines().any(|l| l.contains(line.as_str())),
                "the guide's block at line {} did not print `{line}`:\n{}\n--- output ---\n{out}",
                step.line,
                step.commands
            );
        }
    }
    assert!(
        finished && output.status.success(),
        "the guide did not run to the end ({}):\n{text}",
        output.status
    );
}

#[test]
fn text_blocks_attach_to_the_sh_block_before_them() {
    let steps = steps(
        "```sh\necho a\n```\nprose\n```text\n a \n\n```\n```rust\nx\n```\n```text\nnot attached\n```\n",
    );
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].expected, ["a"]);
    assert_eq!(steps[0].line, 1);
}
