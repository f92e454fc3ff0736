//! The s3 example connector, proven for real (seed 001's "Test connection",
//! done for real): access keys from the local Secrets Manager, a rendered
//! client configuration pointed, through `aws-sdk-s3`, at the S3 API of the
//! same local server; create the bucket, put, list and get an object.

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ObjectCannedAcl;
use keyward_test_support::{CANARY, Moto, sdk_builder};
use serde_json::json;

const CONFIG: &str = r#"
[secrets]
backend = "aws"
region = "us-east-1"
account_id = "123456789012"
endpoint_url = "{MOTO}"
namespace = "acme/prod/"

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

#[tokio::test]
async fn the_rendered_client_configuration_really_talks_to_s3() {
    let moto = Moto::start();
    let admin =
        aws_sdk_secretsmanager::Client::from_conf(sdk_builder().endpoint_url(moto.url()).build());
    let keys = json!({ "access_key_id": "AKIAKEYWARDTEST", "secret_access_key": CANARY });
    admin
        .create_secret()
        .name("acme/prod/s3-uploader")
        .secret_string(keys.to_string())
        .send()
        .await
        .expect("create");

    let config = CONFIG.replace("{MOTO}", &moto.url());
    let (_scratch, keyward) = keyward_tests::keyward_on_aws(&config);

    let rendered = keyward.render("files").await.expect("render");
    let masked = rendered.to_json(false);
    assert!(
        !masked.contains(CANARY) && !masked.contains("AKIAKEYWARDTEST"),
        "{masked}"
    );
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
