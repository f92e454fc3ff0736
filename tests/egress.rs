//! Destinations: a hostile connector, built from source and declared
//! exactly as the postgres and http-api examples are, tries to send the
//! operator's secret (a canary) somewhere the operator did not configure.
//! Every attempt is refused by the host after it assembles the outputs,
//! naming the output and the part at fault; the canary appears in no
//! answer, error, log line or audit record; and a listener standing in
//! for the attacker receives nothing. The destination parser's verdicts
//! are compared with the URL parsers platforms use (Rust `url`, Python
//! `urllib.parse`, Node `URL`).

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use keyward_host::template::destination;
use keyward_host::template::encode::{base64, base64url, percent};
use keyward_host::{Config, Error, Keyward, Rendered};
use keyward_host::{OutputKind, RunError};
use keyward_test_support::{CANARY, EGRESS_ATTACKS as ATTACKS, Scratch};
use serde_json::json;

const CONFIG: &str = r#"
[secrets]
namespace = "acme/prod/"

[secrets.backend]
kind = "file"
path = "secrets.json"

[audit]
file = "audit.jsonl"
tracing = true

[sandbox]
render_timeout_ms = 5000

[connectors.hostile]
component = "{HOSTILE}"
allow = ["db"]

[connectors.hostile.config]
mode = "egress"
secret = "{{ secrets.db.password }}"
host = "db.internal.example"
port = "5432"
database = "orders"
base_url = "https://jira.example.com/rest/"
attacker = "attacker.example"

[connectors.revealing]
component = "{HOSTILE}"
allow = ["db"]
reveal = ["db"]

[connectors.revealing.config]
mode = "egress"
secret = "{{ secrets.db.password }}"
host = "db.internal.example"
database = "orders"
base_url = "https://jira.example.com/rest/"
attacker = "attacker.example"

[connectors.pinless]
component = "{HOSTILE}"
allow = ["db"]

[connectors.pinless.config]
mode = "exfiltrate"
secret = "{{ secrets.db.password }}"
"#;

/// The canary and the forms a connector could write it in.
fn forms() -> Vec<String> {
    vec![
        CANARY.to_string(),
        percent(CANARY.as_bytes()),
        base64(CANARY.as_bytes()),
        base64url(CANARY.as_bytes()),
        base64(format!("app:{CANARY}").as_bytes()),
    ]
}

fn assert_no_canary(what: &str, text: &str) {
    for form in forms() {
        assert!(!text.contains(&form), "`{form}` leaked into {what}: {text}");
    }
}

struct Suite {
    scratch: Scratch,
    keyward: Keyward,
}

impl Suite {
    async fn new(config: &str) -> Self {
        keyward_tests::captured_logs();
        let scratch = Scratch::new(
            config,
            &json!({ "acme/prod/db": { "json": { "password": CANARY } } }),
        );
        let keyward = Keyward::new(Config::load(&scratch.config()).expect("config"))
            .await
            .expect("keyward");
        Self { scratch, keyward }
    }

    async fn attack(&self, connector: &str, attack: &str) -> Result<Rendered, Error> {
        let mut fields: Vec<(String, String)> = Config::load(&self.scratch.config())
            .expect("config")
            .connectors[connector]
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        fields.push(("attack".into(), attack.into()));
        self.keyward.render_fields(connector, &fields).await
    }

    fn audit(&self) -> String {
        std::fs::read_to_string(self.scratch.path().join("audit.jsonl")).unwrap_or_default()
    }
}

fn refusal(result: Result<Rendered, Error>, attack: &str) -> (String, String) {
    match result {
        Err(
            e @ Error::Run {
                error: RunError::Egress(_),
                ..
            },
        ) => {
            let Error::Run {
                error: RunError::Egress(refused),
                ..
            } = &e
            else {
                unreachable!()
            };
            (refused.output.clone(), e.to_string())
        }
        other => panic!("{attack}: not refused by the egress check: {other:?}"),
    }
}

#[tokio::test]
async fn every_redirection_is_refused_naming_the_output_and_the_part() {
    let suite = Suite::new(CONFIG).await;
    for (attack, output, part) in ATTACKS {
        let (refused_output, message) = refusal(suite.attack("hostile", attack).await, attack);
        assert_eq!(refused_output, output, "{attack}: {message}");
        assert!(message.contains(part), "{attack}: {message}");
        assert!(
            message.starts_with(&format!("connector `hostile`: output `{output}`: ")),
            "{message}"
        );
        assert_no_canary(attack, &message);
        assert!(!message.contains("attacker.example"), "{message}");
    }
    // The pins it missed are named by the fields they came from.
    let (_, message) = refusal(suite.attack("hostile", "dsn-host").await, "dsn-host");
    assert!(
        message.contains("(from fields `host`, `port`, `database`, `base_url`)"),
        "{message}"
    );
    let audit = suite.audit();
    assert_no_canary("the audit log", &audit);
    let refused = audit
        .lines()
        .filter(|l| l.contains("\"decision\":\"egress_refused\""))
        .count();
    assert_eq!(refused, ATTACKS.len() + 1, "{audit}");
    assert_no_canary("the logs", &keyward_tests::logs_text());
    let stats = suite.keyward.stats();
    let counted = stats
        .decisions
        .iter()
        .find(|(kind, _)| *kind == "egress_refused")
        .map(|(_, n)| *n);
    assert_eq!(counted, Some(ATTACKS.len() as u64 + 1));
}

#[tokio::test]
async fn the_honest_renders_pass_with_pins_from_their_fields() {
    let suite = Suite::new(CONFIG).await;
    let rendered = suite.attack("hostile", "honest").await.expect("honest dsn");
    let dsn = &rendered.values[0];
    assert_eq!(dsn.kind, OutputKind::Destination);
    assert!(dsn.sensitive);
    assert_eq!(
        dsn.value.as_str(),
        format!("postgresql://app:{CANARY}@db.internal.example:5432/orders")
    );
    let to = dsn.destination.as_ref().expect("parsed");
    assert_eq!(
        (to.scheme.as_deref(), to.host.as_str(), to.port),
        (Some("postgresql"), "db.internal.example", Some(5432))
    );
    assert!(!format!("{rendered:?}").contains(CANARY));
    let rendered = suite
        .attack("hostile", "honest-api")
        .await
        .expect("honest api");
    let url = rendered.values[0].destination.as_ref().expect("parsed");
    assert_eq!(
        (url.host.as_str(), url.port),
        ("jira.example.com", Some(443))
    );
    assert_eq!(rendered.values[1].kind, OutputKind::Credential);
}

#[tokio::test]
async fn reveal_does_not_lift_the_check() {
    let suite = Suite::new(CONFIG).await;
    for (attack, output, _) in &ATTACKS[..9] {
        let (refused, message) = refusal(suite.attack("revealing", attack).await, attack);
        assert_eq!(&refused, output, "{attack}: {message}");
        assert_no_canary(attack, &message);
    }
    suite
        .attack("revealing", "honest")
        .await
        .expect("an honest render of a revealing connector");
}

#[tokio::test]
async fn a_connector_with_no_pins_may_not_output_secrets() {
    let suite = Suite::new(CONFIG).await;
    let result = suite.keyward.render("pinless").await;
    let (_, message) = refusal(result, "pinless");
    assert!(message.contains("no destination pins"), "{message}");
    assert_no_canary("the refusal", &message);
}

#[tokio::test]
async fn an_explicit_egress_replaces_the_pins_from_fields() {
    let with_egress = |entries: &str| {
        CONFIG.replace(
            "[connectors.hostile.config]",
            &format!("egress = [{entries}]\n\n[connectors.hostile.config]"),
        )
    };
    // The operator sends it to the attacker's host too: allowed.
    let suite = Suite::new(&with_egress(
        "\"attacker.example:5432\", \"db.internal.example\"",
    ))
    .await;
    suite
        .attack("hostile", "dsn-host")
        .await
        .expect("pinned by egress");
    // Only there: the field's host is no longer a pin.
    let suite = Suite::new(&with_egress("\"attacker.example:5432\"")).await;
    let (_, message) = refusal(suite.attack("hostile", "honest").await, "honest");
    assert!(
        message.contains("egress `attacker.example:5432`"),
        "{message}"
    );
}

/// A listener on another loopback port stands in for the attacker: the
/// hostile connector renders a DSN to it, the platform (this test)
/// connects to whatever keyward answers, and the listener hears nothing.
#[tokio::test]
async fn the_attackers_listener_receives_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let attacker = listener.local_addr().expect("address").to_string();
    let config = CONFIG.replace(
        "attacker = \"attacker.example\"",
        &format!("attacker = \"{attacker}\""),
    );
    let suite = Suite::new(&config).await;
    for attack in [
        "dsn-host",
        "second-destination",
        "base-url",
        "url-in-credential",
    ] {
        match suite.attack("hostile", attack).await {
            Ok(rendered) => {
                // What a platform would do with an answer: connect.
                for value in &rendered.values {
                    if let Some(to) = &value.destination {
                        let _ =
                            std::net::TcpStream::connect((to.host.as_str(), to.port.unwrap_or(0)));
                    }
                }
                panic!("{attack}: rendered");
            }
            Err(e) => assert_no_canary(attack, &e.to_string()),
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        listener.accept().is_err(),
        "the attacker's listener was reached"
    );
}

/// URLs built from pieces that parsers are known to read differently.
fn generated_urls() -> Vec<String> {
    let schemes = ["https", "http", "HTTPS", "postgresql", "redis", "h\tttps"];
    let users = [
        "", "u@", "u:p@", "u:p%40@", "a@b@", "u\\@", "u:p%zz@", "[u]@",
    ];
    let hosts = [
        "jira.example.com",
        "JIRA.example.COM",
        "jira.example.com.",
        "j%69ra.example.com",
        "jïra.example.com",
        "xn--jra-bla.example.com",
        "127.0.0.1",
        "127.1",
        "2130706433",
        "0x7f.0.0.1",
        "0177.0.0.1",
        "[::1]",
        "[fe80::1%25eth0]",
        "[::ffff:127.0.0.1]",
        "",
        "a..b",
        "attacker.example\\",
        "host_name.internal",
        "attacker.example\\@jira.example.com",
        " jira.example.com",
    ];
    let ports = ["", ":443", ":8443", ":", ":0443", ":99999", ":12a"];
    let tails = [
        "",
        "/",
        "/rest/",
        "/rest/../admin",
        "/rest/%2e%2e/admin",
        "?q=1",
        "#frag",
        "/a?b=c#d",
        "\\evil",
        "/%2Fx",
    ];
    let mut urls = Vec::new();
    for (i, scheme) in schemes.iter().enumerate() {
        for (j, user) in users.iter().enumerate() {
            for (k, host) in hosts.iter().enumerate() {
                for (l, port) in ports.iter().enumerate() {
                    let tail = tails[(i + j + k + l) % tails.len()];
                    urls.push(format!("{scheme}://{user}{host}{port}{tail}"));
                }
            }
        }
    }
    urls
}

/// What another parser read: (scheme, host, port), or nothing if it
/// refused the URL.
type Reading = Option<(String, String, Option<u16>)>;

fn run_reader(program: &str, args: &[&str], urls: &[String]) -> Vec<Reading> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let input = serde_json::to_string(urls).expect("json");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("output");
    assert!(output.status.success(), "{program} failed");
    let answers: Vec<serde_json::Value> =
        serde_json::from_slice(&output.stdout).expect("json answer");
    answers
        .into_iter()
        .map(|a| {
            a.as_array().map(|a| {
                (
                    a[0].as_str().unwrap_or_default().to_ascii_lowercase(),
                    a[1].as_str()
                        .unwrap_or_default()
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_ascii_lowercase(),
                    a[2].as_u64().and_then(|p| u16::try_from(p).ok()),
                )
            })
        })
        .collect()
}

const PYTHON_READER: &str = r#"
import json, sys, urllib.parse
out = []
for url in json.load(sys.stdin):
    try:
        u = urllib.parse.urlsplit(url)
        out.append([u.scheme, u.hostname or "", u.port])
    except ValueError:
        out.append(None)
print(json.dumps(out))
"#;

const NODE_READER: &str = r#"
let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", () => {
  const out = JSON.parse(input).map((url) => {
    try {
      const u = new URL(url);
      const port = u.port === "" ? null : Number(u.port);
      return [u.protocol.replace(/:$/, ""), u.hostname, port];
    } catch {
      return null;
    }
  });
  console.log(JSON.stringify(out));
});
"#;

/// For every generated URL keyward accepts, every parser that reads it
/// finds the same scheme, host and port (Python and Node may refuse what
/// keyward refuses too, never the other way round with another host).
#[test]
fn the_destination_parser_agrees_with_the_clients_parsers_or_refuses() {
    let urls = generated_urls();
    let python = std::env::var("KEYWARD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let python = run_reader(&python, &["-c", PYTHON_READER], &urls);
    let node = run_reader("node", &["-e", NODE_READER], &urls);
    let mut accepted = 0;
    for (i, url) in urls.iter().enumerate() {
        let Ok(ours) = destination::parse_url(url) else {
            continue;
        };
        accepted += 1;
        let scheme = ours.scheme.clone().unwrap_or_default();
        let port = ours.port;
        let rust = url::Url::parse(url).ok().map(|u| {
            (
                u.scheme().to_string(),
                // Hosts compare case-insensitively (an opaque host of a
                // non-special scheme keeps its case in `url`).
                u.host_str()
                    .unwrap_or_default()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_ascii_lowercase(),
                u.port(),
            )
        });
        for (who, reading) in [
            ("url", rust),
            ("urllib", python[i].clone()),
            ("node", node[i].clone()),
        ] {
            // A parser that refuses reaches nothing.
            let Some((their_scheme, their_host, their_port)) = reading else {
                continue;
            };
            let same_host = their_host == ours.host
                || matches!(
                    (their_host.parse::<std::net::Ipv6Addr>(), ours.host.parse::<std::net::Ipv6Addr>()),
                    (Ok(a), Ok(b)) if a == b
                );
            assert!(
                same_host,
                "{who} reads host `{their_host}` in `{url}`, keyward `{}`",
                ours.host
            );
            // The scheme's default port may be dropped by a parser.
            let default = destination::default_port(&scheme);
            assert!(
                their_port == port || (their_port.is_none() && port == default),
                "{who} reads port {their_port:?} in `{url}`, keyward {port:?}"
            );
            assert_eq!(
                their_scheme, scheme,
                "{who} reads another scheme in `{url}`"
            );
        }
    }
    assert!(accepted > 100, "only {accepted} of {} accepted", urls.len());
    assert!(
        accepted < urls.len() / 2,
        "{accepted} of {} accepted",
        urls.len()
    );
}

/// `keyward check` names a connector that outputs secret material with no
/// destination pins, and passes one whose fields give it pins.
#[tokio::test]
async fn check_reports_a_connector_without_destination_pins() {
    let suite = Suite::new(CONFIG).await;
    let report = suite.keyward.check().await;
    let pinless = report
        .connectors
        .iter()
        .find(|c| c.id == "pinless")
        .expect("pinless");
    let why = pinless.destinations.as_ref().expect_err("no pins");
    assert!(why.contains("connectors.pinless.egress"), "{why}");
    assert!(
        report.to_string().contains("destinations: FAILED"),
        "{report}"
    );
    let hostile = report
        .connectors
        .iter()
        .find(|c| c.id == "hostile")
        .expect("hostile");
    assert!(hostile.destinations.is_ok());
    assert_no_canary("the check report", &report.to_string());
}
