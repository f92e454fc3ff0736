//! The http-api example connector, proven for real: the Workato form of a
//! reference to a JSON key with dots in its name, resolved from the local
//! Secrets Manager, rendered into a Basic Authorization header that a local
//! HTTP endpoint accepts — and only it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

use keyward_test_support::{CANARY, Moto, sdk_builder};
use serde_json::json;

const CONFIG: &str = r#"
[secrets]
namespace = "prod/"

[secrets.backend]
kind = "aws"
region = "us-east-1"
account_id = "123456789012"
endpoint_url = "{MOTO}"

[connectors.jira]
component = "{HTTP_API}"
allow = ["jira-credentials#prod.jira.secret.key"]
[connectors.jira.config]
base_url = "{BASE_URL}"
user = "automation@example.com"
token = "{{workato:sm:prod.jira.secret.key:{ARN}}}"
"#;

/// Serves one request per connection: 200 for the expected Authorization
/// header, 401 for anything else. Stops when the listener is dropped.
fn serve(listener: TcpListener, expected: String) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut authorized = false;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                if let Some(value) = line.trim_end().strip_prefix("Authorization: ") {
                    authorized = value == expected;
                }
                line.clear();
            }
            let status = if authorized {
                "200 OK"
            } else {
                "401 Unauthorized"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
}

/// `GET /rest/api/2/myself` with the header; the status code.
fn get(base_url: &str, authorization: &str) -> u16 {
    let address = base_url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).expect("connect");
    write!(
        stream,
        "GET /rest/api/2/myself HTTP/1.1\r\nHost: {address}\r\nAuthorization: {authorization}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status")
}

#[tokio::test]
async fn the_rendered_header_authenticates_against_a_real_endpoint() {
    let moto = Moto::start();
    let admin =
        aws_sdk_secretsmanager::Client::from_conf(sdk_builder().endpoint_url(moto.url()).build());
    let token = format!("{CANARY}:tøken");
    let created = admin
        .create_secret()
        .name("prod/jira-credentials")
        .secret_string(json!({ "prod.jira.secret.key": token, "other": "x" }).to_string())
        .send()
        .await
        .expect("create");
    let arn = created.arn().expect("arn");

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base_url = format!("http://{}", listener.local_addr().expect("address"));
    let expected = format!(
        "Basic {}",
        keyward_host::template::encode::base64(
            format!("automation@example.com:{token}").as_bytes()
        )
    );
    serve(listener, expected);

    let config = CONFIG
        .replace("{MOTO}", &moto.url())
        .replace("{BASE_URL}", &base_url)
        .replace("{ARN}", arn);
    let (_scratch, keyward) = keyward_tests::keyward_on_aws(&config);

    let rendered = keyward.render("jira").await.expect("render");
    assert_eq!(rendered.get("base_url"), Some(base_url.as_str()));
    assert!(
        !rendered.to_json(false).contains(CANARY),
        "the header is masked"
    );
    let authorization = rendered.get("authorization").expect("header").to_string();
    assert_eq!(get(&base_url, &authorization), 200);
    assert_eq!(
        get(&base_url, "Basic d3Jvbmc6d3Jvbmc="),
        401,
        "the endpoint is not a rubber stamp"
    );

    // The key grant is exact: another key of the same secret is refused.
    let fields = [
        ("base_url".to_string(), base_url.clone()),
        ("user".to_string(), "u".to_string()),
        (
            "token".to_string(),
            format!("{{{{workato:sm:other:{arn}}}}}"),
        ),
    ];
    let error = keyward
        .render_fields("jira", &fields)
        .await
        .expect_err("other key")
        .to_string();
    assert!(error.contains("not found or is not allowed"), "{error}");
}
