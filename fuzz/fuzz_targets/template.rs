//! The template grammar on arbitrary text: never panics, every column it
//! reports lies inside the text (or just past its end), rendering a parsed
//! template with any values never panics, and rendering it in parts gives
//! the same text.
#![no_main]

use keyward_template::{Part, Template, ValueRef};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    // A value with every character the filters treat specially.
    let value = "v@l:ue/%?&\"\\\n é";
    let length = u32::try_from(text.chars().count()).unwrap_or(u32::MAX);
    for parsed in [Template::parse(text), Template::parse_bare_arn(text)] {
        match parsed {
            Ok(template) => {
                for placeholder in template.placeholders() {
                    assert!(placeholder.column >= 1 && placeholder.column <= length);
                }
                let whole = template.render(|_| Ok::<_, ()>(ValueRef::Text(value)));
                assert!(whole.is_ok());
                let parts = template
                    .render_parts(|_| Ok::<_, ()>((ValueRef::Text(value), ())))
                    .expect("parts");
                let joined: String = parts
                    .iter()
                    .map(|part| match part {
                        Part::Literal(text) | Part::Value { text, .. } => text.as_str(),
                    })
                    .collect();
                assert_eq!(Ok(joined), whole);
                let bytes = template.render(|_| Ok::<_, ()>(ValueRef::Bytes(value.as_bytes())));
                assert!(bytes.is_ok());
            }
            Err(error) => assert!(error.column >= 1 && error.column <= length.saturating_add(1)),
        }
    }
});
