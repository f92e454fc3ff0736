//! The template parser on arbitrary text: never panics, every column it
//! reports lies inside the text (or just past its end), and rendering a
//! parsed template with any values never panics.
#![no_main]

use keyward_guest::template::{Template, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let length = u32::try_from(text.chars().count()).unwrap_or(u32::MAX);
    for parsed in [Template::parse(text), Template::parse_bare_arn(text)] {
        match parsed {
            Ok(template) => {
                for placeholder in template.placeholders() {
                    assert!(placeholder.column >= 1 && placeholder.column <= length);
                }
                let text_value = template.render(|p| Ok::<_, ()>(Value::Text(p.reference.name.clone())));
                assert!(text_value.is_ok());
                let bytes = template.render(|p| Ok::<_, ()>(Value::Bytes(p.reference.name.clone().into_bytes())));
                assert!(bytes.is_ok());
            }
            Err(error) => assert!(error.column >= 1 && error.column <= length.saturating_add(1)),
        }
    }
});
