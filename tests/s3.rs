//! The s3 example connector, proven for real (seed 001's "Test connection",
//! done for real): access keys from the local Secrets Manager, a rendered
//! client configuration pointed, through `aws-sdk-s3`, at the S3 API of the
//! same local server; create the bucket, put, list and get an object.

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ObjectCannedAcl;
use keyward_test_support::{CANARY, Moto};
use serde_json::json;

const CONFIG: &str = r#"
[secrets]
namespace = "acme/prod/"

[secrets.backend]
kind = "aws"
region = "us-east-1"
account_id = "123456789012"
endpoint_url = "{MOTO}"

[connectors.files]
component = "{S3}"
allow = ["s3-uploader"]
[connectors.files.config]
bucket = "keyward-reports"
region = "us-east-1"
endpoint = "{MOTO}"
access_key_id = "{{ secrets['s3-uploader'].access_key_id }}"
secret_access_key = "{{ secrets['s3-uploader'].secret_access_key }}"
default_acl = "bucket-owner-full-control"
"#;

/// Sets moto up the way an account is: an IAM user with an access key
/// and a policy, the key pair stored as a secret, and then (through
/// moto's `/moto-api/reset-auth`) every further request must be signed by
/// a real key of that account. Returns the key pair.
fn iam_user_then_enforce_auth(moto: &Moto) -> (String, String) {
    const SETUP: &str = r#"
import json, sys, urllib.request, boto3
url = sys.argv[1]
kw = dict(endpoint_url=url, region_name="us-east-1",
          aws_access_key_id="testing", aws_secret_access_key="testing")
iam = boto3.client("iam", **kw)
iam.create_user(UserName="uploader")
iam.put_user_policy(UserName="uploader", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="uploader")["AccessKey"]
boto3.client("secretsmanager", **kw).create_secret(
    Name="acme/prod/s3-uploader",
    SecretString=json.dumps({"access_key_id": key["AccessKeyId"],
                             "secret_access_key": key["SecretAccessKey"]}))
urllib.request.urlopen(urllib.request.Request(url + "/moto-api/reset-auth", data=b"0", method="POST",
                                              headers={"Content-Type": "text/plain"})).read()
print(key["AccessKeyId"], key["SecretAccessKey"])
"#;
    let python = std::env::var("KEYWARD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(python)
        .args(["-c", SETUP, &moto.url()])
        .output()
        .expect("run the IAM set-up");
    assert!(
        out.status.success(),
        "IAM set-up failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    let id = parts.next().expect("access key id").to_string();
    let secret = parts.next().expect("secret access key").to_string();
    (id, secret)
}

fn s3_client(endpoint: &str, region: &str, id: &str, secret: &str) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .credentials_provider(Credentials::new(id, secret, None, None, "keyward"))
            .build(),
    )
}

#[tokio::test]
async fn the_rendered_client_configuration_really_talks_to_s3() {
    let moto = Moto::start();
    let (key_id, key_secret) = iam_user_then_enforce_auth(&moto);

    // Made-up keys are refused from now on: the server checks them.
    let forged = s3_client(&moto.url(), "us-east-1", "AKIAFORGEDKEYWARD000", CANARY);
    assert!(
        forged.list_buckets().send().await.is_err(),
        "moto must refuse keys it did not issue"
    );

    // keyward itself reads Secrets Manager with the account's key.
    let config = CONFIG.replace("{MOTO}", &moto.url());
    let scratch = keyward_test_support::Scratch::new(&config, &json!({}));
    let config = keyward_host::Config::load(&scratch.config()).expect("config");
    let keyward_host::Backend::Aws(settings) = &config.secrets.backend else {
        panic!("aws backend")
    };
    let credentials = aws_sdk_secretsmanager::config::SharedCredentialsProvider::new(
        aws_sdk_secretsmanager::config::Credentials::new(&key_id, &key_secret, None, None, "iam"),
    );
    let store = std::sync::Arc::new(keyward_host::store::aws::AwsStore::from_sdk_config(
        &keyward_test_support::sdk_config(),
        Some(credentials),
        settings,
    ));
    let keyward = keyward_host::Keyward::with_store(config, store).expect("keyward");

    let rendered = keyward.render("files").await.expect("render");
    let masked = rendered.to_json(false);
    assert!(
        !masked.contains(&key_secret) && !masked.contains(&key_id),
        "{masked}"
    );
    assert_eq!(rendered.get("access_key_id"), Some(key_id.as_str()));
    assert_eq!(rendered.get("secret_access_key"), Some(key_secret.as_str()));
    let get = |name: &str| {
        rendered
            .get(name)
            .unwrap_or_else(|| panic!("output {name}"))
            .to_string()
    };

    let s3_config = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(get("region")))
        .endpoint_url(get("endpoint"))
        .force_path_style(get("force_path_style") == "true")
        .credentials_provider(Credentials::new(
            get("access_key_id"),
            get("secret_access_key"),
            None,
            None,
            "keyward",
        ))
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(s3_config);
    let bucket = get("bucket");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    s3.put_object()
        .bucket(&bucket)
        .key("reports/2026-11.csv")
        .acl(ObjectCannedAcl::from(get("default_acl").as_str()))
        .body(ByteStream::from_static(b"id,total\n1,42\n"))
        .send()
        .await
        .expect("put");
    let listed = s3
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .expect("list");
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["reports/2026-11.csv"]);
    let object = s3
        .get_object()
        .bucket(&bucket)
        .key("reports/2026-11.csv")
        .send()
        .await
        .expect("get");
    let body = object.body.collect().await.expect("body").into_bytes();
    assert_eq!(&body[..], b"id,total\n1,42\n");
}
