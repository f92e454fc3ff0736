//! The destination parser and the egress check on arbitrary text: never
//! panic; every URL keyward accepts is read by Rust's `url` (the parser
//! Rust clients use) with the same host and port, or refused by it (a
//! compound scheme's URL read from its last part, as its client does); and
//! the check, with arbitrary marks, answers without panicking.
#![no_main]

use keyward_template::destination;
use keyward_template::egress::{CheckedOutput, DestinationPart, OutputKind, PinField, Pins, check};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (String, u16, u16)| {
    let (text, start, len) = input;
    if let Ok(ours) = destination::parse_url(&text) {
        // A compound scheme (`jdbc:postgresql://`) is read by its client
        // from its last part on; to `url` the whole is an opaque path.
        let scheme_end = text.find("://").unwrap_or(0);
        let inner = text[..scheme_end].rfind(':').map_or(0, |colon| colon + 1);
        if let Ok(theirs) = url::Url::parse(&text[inner..]) {
            let host = theirs
                .host_str()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase();
            let same = host == ours.host
                || matches!(
                    (host.parse::<std::net::Ipv6Addr>(), ours.host.parse::<std::net::Ipv6Addr>()),
                    (Ok(a), Ok(b)) if a == b
                );
            assert!(same, "url reads host {host:?}, keyward {:?}", ours.host);
            let default = ours.scheme.as_deref().and_then(destination::default_port);
            assert!(
                theirs.port() == ours.port || (theirs.port().is_none() && ours.port == default),
                "url reads port {:?}, keyward {:?}",
                theirs.port(),
                ours.port
            );
        }
    }
    let _ = destination::parse(&text);
    let _ = destination::looks_like_url(&text);
    let pins = Pins::from_fields(&[
        PinField { name: "host", part: DestinationPart::Host, value: Some("db.internal.example"), configured: true },
        PinField { name: "url", part: DestinationPart::Url, value: Some(&text), configured: true },
    ]);
    let start = usize::from(start).min(text.len());
    let end = start.saturating_add(usize::from(len)).min(text.len());
    let marks = [start..end];
    for kind in [OutputKind::Destination, OutputKind::Credential, OutputKind::Setting] {
        let outputs = [CheckedOutput { name: "out", kind, value: &text, marks: &marks }];
        let _ = check(&outputs, &pins);
    }
});
