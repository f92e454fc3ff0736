//! Warm render of a three-secret template, side by side in one process:
//! keyward (warm instance and fresh instance, sandbox included) and the
//! peer, the official caching client doing the same three lookups and
//! string building. All caches are warm; no upstream call is timed.

use criterion::{Criterion, criterion_group, criterion_main};
use std::sync::atomic::{AtomicU64, Ordering};

use keyward_benches::{
    Fixture, fields, keyward_render, keyward_render_by, peer_render, peer_render_wide,
    wide_template,
};
use keyward_host::SecretRequest;

fn warm_render(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let wide = vec![("a".to_string(), wide_template())];
    let (fixture, warm, fresh, audited, peer) = runtime.block_on(async {
        let mut fixture = Fixture::start().await;
        let warm = fixture.keyward("warm");
        let fresh = fixture.keyward("fresh");
        let audited = fixture.keyward_audited();
        let peer = fixture.peer().await;
        // Fill every cache (and compile the component) before timing.
        let fields = fields();
        let expected = peer_render(&peer).await;
        assert_eq!(keyward_render(&warm, &fields).await, expected);
        assert_eq!(keyward_render(&fresh, &fields).await, expected);
        for host in [&warm, &fresh] {
            let unplanned = keyward_render_by(host, "echo-unplanned", &fields).await;
            assert_eq!(unplanned, expected);
        }
        let rendered = audited
            .render_fields("echo-audited", &fields)
            .await
            .expect("render");
        assert_eq!(rendered.get("a"), Some(expected.as_str()));
        assert_eq!(
            keyward_render(&warm, &wide).await,
            peer_render_wide(&peer).await
        );
        (fixture, warm, fresh, audited, peer)
    });
    let audit_file = fixture.audit_file();
    let audited_before = std::fs::read_to_string(&audit_file).map_or(0, |a| a.lines().count());
    let fields = fields();
    let upstream_before = fixture.proxy.total();

    let mut group = c.benchmark_group("warm_render");
    // The planned render (the connector does not run), and the same
    // connector run on every render, side by side.
    group.bench_function("keyward_planned", |b| {
        b.to_async(&runtime).iter(|| keyward_render(&warm, &fields))
    });
    group.bench_function("keyward_warm_instance", |b| {
        b.to_async(&runtime)
            .iter(|| keyward_render_by(&warm, "echo-unplanned", &fields))
    });
    group.bench_function("keyward_fresh_instance", |b| {
        b.to_async(&runtime)
            .iter(|| keyward_render_by(&fresh, "echo-unplanned", &fields))
    });
    // A plan miss: each render is of a configuration not seen before (a
    // plain field changes), so the connector runs on a fresh instance with
    // deterministic WASI and its answer is recorded.
    let configuration = AtomicU64::new(0);
    let new_configurations = &fresh;
    group.bench_function("keyward_plan_miss", |b| {
        b.to_async(&runtime).iter(|| {
            let n = configuration.fetch_add(1, Ordering::Relaxed);
            let fields = vec![
                ("a".to_string(), keyward_benches::TEMPLATE.to_string()),
                ("b".to_string(), n.to_string()),
            ];
            async move { keyward_render(new_configurations, &fields).await }
        })
    });
    let no_secrets = vec![(
        "a".to_string(),
        "postgresql://user@host:5432/orders".to_string(),
    )];
    group.bench_function("keyward_warm_instance_no_secrets", |b| {
        b.to_async(&runtime)
            .iter(|| keyward_render_by(&warm, "echo-unplanned", &no_secrets))
    });
    let requests: Vec<SecretRequest> = ["user", "password", "host"]
        .into_iter()
        .map(SecretRequest::name)
        .collect();
    group.bench_function("keyward_resolve_only", |b| {
        b.to_async(&runtime).iter(|| async {
            let values = warm.resolve("echo", &requests).await.expect("resolve");
            assert!(values.iter().all(Result::is_ok));
        })
    });
    group.bench_function("peer_caching_client", |b| {
        b.to_async(&runtime).iter(|| peer_render(&peer))
    });
    group.bench_function("keyward_warm_instance_policy_and_audit", |b| {
        b.to_async(&runtime).iter(|| async {
            let rendered = audited
                .render_fields("echo-audited", &fields)
                .await
                .expect("render");
            assert!(rendered.get("a").is_some());
        })
    });
    group.bench_function("keyward_warm_instance_20_secrets", |b| {
        b.to_async(&runtime).iter(|| keyward_render(&warm, &wide))
    });
    group.bench_function("peer_caching_client_20_secrets", |b| {
        b.to_async(&runtime).iter(|| peer_render_wide(&peer))
    });
    group.bench_function("egress_check_one_destination", |b| {
        b.iter(egress_check_one_destination)
    });
    group.finish();
    let audited_after = std::fs::read_to_string(&audit_file).map_or(0, |a| a.lines().count());
    assert!(
        audited_after > audited_before,
        "the audited renders wrote audit records"
    );
    assert_eq!(
        fixture.proxy.total(),
        upstream_before,
        "timed renders made no upstream call"
    );
}

/// The egress check alone, as the host runs it on the postgres example's
/// answer: pins from its host, port and database fields, then the DSN (a
/// destination holding the password) and the host output.
fn egress_check_one_destination() {
    use keyward_host::template::egress::{
        CheckedOutput, DestinationPart, OutputKind, PinField, Pins, check,
    };
    let field = |name, part, value| PinField {
        name,
        part,
        value: Some(value),
        configured: true,
    };
    let pins = Pins::from_fields(&[
        field("host", DestinationPart::Host, "db.internal.example"),
        field("port", DestinationPart::Port, "5432"),
        field("database", DestinationPart::Resource, "orders"),
    ]);
    let dsn = "postgresql://app:p%40ss%3Aw%2Frd@db.internal.example:5432/orders?sslmode=require";
    let password = "p%40ss%3Aw%2Frd";
    let at = dsn.find(password).expect("password in the DSN");
    let marks = [at..at + password.len()];
    let outputs = [
        CheckedOutput {
            name: "dsn",
            kind: OutputKind::Destination,
            value: dsn,
            marks: &marks,
        },
        CheckedOutput {
            name: "host",
            kind: OutputKind::Destination,
            value: "db.internal.example",
            marks: &[],
        },
    ];
    let verdicts = check(std::hint::black_box(&outputs), &pins).expect("allowed");
    std::hint::black_box(verdicts);
}

criterion_group!(benches, warm_render);
criterion_main!(benches);
