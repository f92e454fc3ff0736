//! The postgres example connector, proven for real: secrets in the local
//! Secrets Manager, a real PostgreSQL server, a role whose password is full
//! of URL-hostile and non-ASCII characters. The rendered DSN connects, and
//! after a rotation the next render after the TTL (or at once, after an
//! invalidation) connects with the new password.

use std::sync::Arc;
use std::time::Duration;

use keyward_host::Keyward;
use keyward_host::ManualClock;
use keyward_host::{Invalidation, SecretRequest};
use keyward_test_support::{Moto, Postgres, sql_literal};
use serde_json::json;

const FIRST: &str = keyward_test_support::ROTATION_PASSWORDS[0];
const SECOND: &str = keyward_test_support::ROTATION_PASSWORDS[1];
const THIRD: &str = keyward_test_support::ROTATION_PASSWORDS[2];

const CONFIG: &str = r#"
[secrets]
namespace = "acme/prod/"
cache_ttl_ms = 500
invalidate_interval_ms = 1

[secrets.backend]
kind = "aws"
region = "us-east-1"
account_id = "123456789012"
endpoint_url = "{MOTO}"

[connectors.orders-db]
component = "{POSTGRES}"
allow = ["db", "host"]
[connectors.orders-db.config]
host = "{{ secrets.host }}"
port = "{PORT}"
database = "orders"
user = "{{ secrets.db.user }}"
password = "{{ secrets['db']['password'] }}"
sslmode = "disable"

# ECS `valueFrom` style: JSON keys and a staging label in the ARN; the
# password field takes a bare ARN (the connector declares it a reference).
[connectors.orders-db-previous]
component = "{POSTGRES}"
allow = ["db@AWSCURRENT,AWSPREVIOUS", "host"]
[connectors.orders-db-previous.config]
host = "{{ secrets.host }}"
port = "{PORT}"
database = "orders"
user = "{{ arn:aws:secretsmanager:us-east-1:123456789012:secret:acme/prod/db:user:: }}"
password = "arn:aws:secretsmanager:us-east-1:123456789012:secret:acme/prod/db:password:AWSPREVIOUS:"
sslmode = "disable"
"#;

/// The password in the DSN the connector renders.
async fn rendered_password(
    keyward: &Keyward,
    connector: &str,
) -> Result<Vec<u8>, keyward_host::Error> {
    let rendered = keyward.render(connector).await?;
    let dsn = rendered.get("dsn").expect("dsn");
    let config = std::str::FromStr::from_str(dsn)
        .map(|c: tokio_postgres::Config| c.get_password().map(<[u8]>::to_vec));
    Ok(config.expect("the DSN parses").unwrap_or_default())
}

/// Renders the connector and runs `SELECT 1` over the DSN.
async fn connect(keyward: &Keyward) -> Result<i32, tokio_postgres::Error> {
    let rendered = keyward.render("orders-db").await.expect("render");
    let dsn = rendered.get("dsn").expect("dsn").to_string();
    let (client, connection) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(connection);
    let one: i32 = client.query_one("SELECT 1", &[]).await?.get(0);
    drop(client);
    let _ = driver.await;
    Ok(one)
}

#[tokio::test]
async fn the_rendered_dsn_connects_and_follows_rotation() {
    let postgres = Postgres::start();
    postgres.sql(&format!(
        "CREATE ROLE app LOGIN PASSWORD {}",
        sql_literal(FIRST)
    ));
    postgres.sql("CREATE DATABASE orders OWNER app");

    let moto = Moto::start();
    let secret = |password: &str| json!({ "user": "app", "password": password }).to_string();
    let admin = moto
        .seed(&[
            ("acme/prod/host", "127.0.0.1"),
            ("acme/prod/db", &secret(FIRST)),
        ])
        .await;

    let config = CONFIG
        .replace("{MOTO}", &moto.url())
        .replace("{PORT}", &postgres.port().to_string());
    // Cache time on a manual clock: "within the TTL" holds however slow
    // the machine is, and "after the TTL" is one step of the clock.
    let clock = Arc::new(ManualClock::new());
    let (_scratch, keyward) = keyward_tests::keyward_on_aws_with_clock(&config, clock.clone());

    assert_eq!(
        connect(&keyward)
            .await
            .expect("connects with the first password"),
        1
    );
    let error = rendered_password(&keyward, "orders-db-previous")
        .await
        .expect_err("no previous version yet");
    assert!(
        error
            .to_string()
            .contains("was not found or is not allowed"),
        "{error}"
    );

    // Rotate on the server and in Secrets Manager. Within the TTL the cached
    // (old) password no longer works...
    postgres.sql(&format!("ALTER ROLE app PASSWORD {}", sql_literal(SECOND)));
    admin
        .put_secret_value()
        .secret_id("acme/prod/db")
        .secret_string(secret(SECOND))
        .send()
        .await
        .expect("rotate");
    // During the rotation the ECS-style connector reads the previous version.
    let previous = rendered_password(&keyward, "orders-db-previous")
        .await
        .expect("AWSPREVIOUS");
    assert_eq!(previous, FIRST.as_bytes());
    let error = connect(&keyward)
        .await
        .expect_err("the cached password was rotated away");
    assert!(
        format!("{error:?}").contains("password authentication failed"),
        "{error:?}"
    );
    // ...and an invalidation after the rejection makes the new one immediate.
    let db = SecretRequest::name("db");
    assert_eq!(
        keyward
            .invalidate("orders-db", &db)
            .await
            .expect("connector"),
        Invalidation::Done
    );
    assert_eq!(
        connect(&keyward)
            .await
            .expect("connects after invalidation"),
        1
    );

    // Without an invalidation, the next render after the TTL picks it up.
    postgres.sql(&format!("ALTER ROLE app PASSWORD {}", sql_literal(THIRD)));
    admin
        .put_secret_value()
        .secret_id("acme/prod/db")
        .secret_string(secret(THIRD))
        .send()
        .await
        .expect("rotate");
    clock.advance(Duration::from_millis(600));
    assert_eq!(connect(&keyward).await.expect("connects after the TTL"), 1);
}
