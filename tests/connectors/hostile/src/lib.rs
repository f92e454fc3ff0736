//! A connector that misbehaves on request (`mode`), after reading a secret
//! (`secret`), so tests can prove the host contains each kind of attack.

use std::hint::black_box;

use keyward_guest::template::{Reference, Value};
use keyward_guest::{
    Connector, ConnectorInfo, Field, Fields, HostResolver, Level, Output, RenderError, Resolver,
    invalidate, list_secrets, log,
};

struct Hostile;

impl Connector for Hostile {
    fn info() -> ConnectorInfo {
        ConnectorInfo::new("hostile", "0.1.0", "Misbehaves on request")
            .field(Field::new("mode", "What to do").required())
            .field(Field::new("secret", "Read before misbehaving").sensitive())
            .field(Field::new(
                "needle",
                "Mode scan: the text to look for, reversed",
            ))
            .field(Field::new(
                "address",
                "Mode network: the host:port to connect to",
            ))
    }

    fn render(fields: &Fields) -> Result<Vec<Output>, RenderError> {
        let result = match fields.require("mode")? {
            "ok" => "fine".to_string(),
            "scan" => scan_memory_for_reversed(fields.require("needle")?),
            "loop" => loop {
                black_box(0u64);
            },
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 64 << 20]);
                    black_box(&hoard);
                }
            }
            "recursion" => recurse(black_box(u64::MAX)).to_string(),
            "huge-name" => ask(Reference {
                name: "x".repeat(16 << 20),
                path: Vec::new(),
                version_stage: None,
                version_id: None,
            }),
            "many-references" => {
                let refs: Vec<Reference> = (0..10_000)
                    .map(|i| Reference {
                        name: format!("s{i}"),
                        path: Vec::new(),
                        version_stage: None,
                        version_id: None,
                    })
                    .collect();
                match HostResolver.resolve_many(&refs).pop() {
                    Some(Err(e)) => e.message,
                    _ => "answered".into(),
                }
            }
            "random" => {
                let bytes = wasip2::random::random::get_random_bytes(4 << 30);
                format!("got {} random bytes", bytes.len())
            }
            "fs" => match std::fs::read_to_string("/etc/passwd") {
                Ok(text) => format!("read {} bytes", text.len()),
                Err(e) => format!("denied: {e}"),
            },
            "env" => format!(
                "vars={} aws={:?}",
                std::env::vars().count(),
                std::env::var("AWS_SECRET_ACCESS_KEY").ok()
            ),
            "network" => {
                let address = fields.get("address").unwrap_or("169.254.169.254:80");
                match std::net::TcpStream::connect(address) {
                    Ok(_) => "connected".into(),
                    Err(e) => format!("denied: {:?}: {e}", e.kind()),
                }
            }
            "list" => list_secrets().join(","),
            "list-loop" => loop {
                black_box(list_secrets());
            },
            "huge-stage-loop" => loop {
                black_box(ask(Reference {
                    version_stage: Some("S".repeat(4 << 20)),
                    ..reference("key")
                }));
            },
            "huge-path-loop" => loop {
                black_box(ask(Reference {
                    path: vec!["k".repeat(4 << 20)],
                    ..reference("key")
                }));
            },
            "denied-loop" => loop {
                let refs: Vec<Reference> = (0..256)
                    .map(|i| reference(&format!("forbidden/{i}")))
                    .collect();
                black_box(HostResolver.resolve_many(&refs));
            },
            "missing-loop" => {
                for i in 0.. {
                    black_box(ask(reference(&format!("missing/{i}"))));
                }
                "unreachable".into()
            }
            "invalidate-probe" => {
                // An allowed name that does not exist, and a denied one,
                // each twice: the answers must not tell them apart.
                let allowed = reference("missing/x");
                let denied = reference("forbidden/x");
                format!(
                    "{} {} {} {}",
                    invalidate(&allowed),
                    invalidate(&denied),
                    invalidate(&allowed),
                    invalidate(&denied)
                )
            }
            "forge" => {
                log(
                    Level::Info,
                    "ok\n2026-01-01T00:00:00.000Z  INFO keyward::audit: {\"decision\":\"allowed\"}\r\u{1b}]52;c;ZXZpbA==\u{7}\u{1b}[2J\u{9b}31m",
                );
                return Err(RenderError::field(
                    "mode\n  db  ok",
                    "fine\nconnector x:\n  {{ secrets.db }}  ok\u{1b}[31m",
                ));
            }
            "forge-output" => {
                return Ok(vec![Output::new("result\n\u{1b}[31mfake", "x")]);
            }
            "log-flood" => {
                for i in 0..100_000 {
                    log(Level::Info, &format!("hostile log line {i}"));
                }
                "flooded".into()
            }
            "stdout" => {
                println!("stdout: {}", fields.get("secret").unwrap_or_default());
                eprintln!("stderr: {}", fields.get("secret").unwrap_or_default());
                "printed".into()
            }
            other => {
                return Err(RenderError::field(
                    "mode",
                    format!("unknown mode `{other}`"),
                ));
            }
        };
        Ok(vec![Output::new("result", result)])
    }
}

/// Looks through all of linear memory for the text whose reverse is
/// `reversed`, without ever building that text, so whatever it finds was
/// left there by an earlier render of this instance.
fn scan_memory_for_reversed(reversed: &str) -> String {
    let needle = reversed.as_bytes();
    let Some(&first) = needle.last() else {
        return "empty needle".into();
    };
    let read = |address: usize| -> u8 {
        // SAFETY: every address below the memory size is in bounds in a
        // wasm linear memory; this connector is hostile on purpose.
        unsafe { std::ptr::read_volatile(address as *const u8) }
    };
    #[cfg(target_arch = "wasm32")]
    let size = core::arch::wasm32::memory_size(0) * 65536;
    #[cfg(not(target_arch = "wasm32"))]
    let size: usize = 0;
    for address in 1..size.saturating_sub(needle.len()) {
        if read(address) == first
            && (1..needle.len()).all(|i| read(address + i) == needle[needle.len() - 1 - i])
        {
            return format!("found at {address}");
        }
    }
    "clean".into()
}

fn recurse(n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        1 + recurse(black_box(n - 1))
    }
}

fn reference(name: &str) -> Reference {
    Reference {
        name: name.to_string(),
        path: Vec::new(),
        version_stage: None,
        version_id: None,
    }
}

fn ask(reference: Reference) -> String {
    match HostResolver.resolve_many(&[reference]).pop() {
        Some(Ok(Value::Text(_) | Value::Bytes(_))) => "answered".into(),
        Some(Err(e)) => e.message,
        None => "no answer".into(),
    }
}

keyward_guest::export_connector!(Hostile);
