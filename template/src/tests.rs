use super::*;
use std::collections::HashMap;

fn reference(name: &str, path: &[&str]) -> Reference {
    Reference {
        name: name.into(),
        path: path.iter().map(|s| s.to_string()).collect(),
        version_stage: None,
        version_id: None,
    }
}

fn refs(text: &str) -> Vec<Reference> {
    Template::parse(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .placeholders()
        .map(|p| p.reference.clone())
        .collect()
}

fn error(text: &str) -> TemplateError {
    match Template::parse(text) {
        Ok(t) => panic!("{text} parsed as {t:?}"),
        Err(e) => e,
    }
}

fn render_with(text: &str, values: &[(&str, Value)]) -> String {
    let values: HashMap<&str, &Value> = values.iter().map(|(k, v)| (*k, v)).collect();
    Template::parse(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .render(|p| {
            values
                .get(p.reference.to_string().as_str())
                .map(|v| v.as_ref())
                .ok_or(format!("no value for {}", p.reference))
        })
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

#[test]
fn literal_text_has_no_placeholders() {
    let t = Template::parse("host=db port=5432 {single} }} brace").unwrap();
    assert_eq!(t.placeholders().count(), 0);
    assert_eq!(
        t.render(|_| Err::<ValueRef, ()>(())).unwrap(),
        "host=db port=5432 {single} }} brace"
    );
}

#[test]
fn dotted_name_and_keys() {
    assert_eq!(
        refs("{{ secrets.db_password }}"),
        [reference("db_password", &[])]
    );
    assert_eq!(
        refs("{{secrets.db.password}}"),
        [reference("db", &["password"])]
    );
    assert_eq!(
        refs("{{ secrets.a.b.c.d }}"),
        [reference("a", &["b", "c", "d"])]
    );
}

#[test]
fn bracket_names_with_either_quote() {
    assert_eq!(
        refs("{{ secrets['a/b']['k'] }}"),
        [reference("a/b", &["k"])]
    );
    assert_eq!(
        refs(r#"{{ secrets["a/b"]["k"] }}"#),
        [reference("a/b", &["k"])]
    );
    assert_eq!(
        refs("{{ secrets[ 'x.y@z+=-' ] }}"),
        [reference("x.y@z+=-", &[])]
    );
    assert_eq!(
        refs("{{ secrets['db'].password['inner key'] }}"),
        [reference("db", &["password", "inner key"])]
    );
    assert_eq!(refs(r"{{ secrets['it\'s'] }}"), [reference("it's", &[])]);
}

#[test]
fn workato_form_keeps_dotted_key_whole() {
    let arn = "arn:aws:secretsmanager:us-east-1:137149879143:secret:prod-jira-credentials-FsmeTs";
    assert_eq!(
        refs(&format!("{{{{workato:sm:prod.jira.secret.key:{arn}}}}}")),
        [reference(arn, &["prod.jira.secret.key"])]
    );
}

#[test]
fn ecs_arn_with_optional_fields() {
    let base = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db";
    assert_eq!(refs(&format!("{{{{ {base} }}}}")), [reference(base, &[])]);
    assert_eq!(
        refs(&format!("{{{{ {base}:password:: }}}}")),
        [reference(base, &["password"])]
    );
    let previous = refs(&format!("{{{{ {base}::AWSPREVIOUS: }}}}"));
    assert_eq!(previous[0].version_stage.as_deref(), Some("AWSPREVIOUS"));
    assert!(previous[0].path.is_empty());
    let by_id = refs(&format!(
        "{{{{ {base}:user::0f7c5c9e-1b2a-4c3d-9e8f-123456789abc }}}}"
    ));
    assert_eq!(
        by_id[0].version_id.as_deref(),
        Some("0f7c5c9e-1b2a-4c3d-9e8f-123456789abc")
    );
    assert_eq!(by_id[0].path, ["user"]);
}

#[test]
fn ecs_takes_no_trailing_field_or_all_three() {
    let base = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db";
    for (typo, count) in [
        (format!("{base}:password"), 1),
        (format!("{base}:wrong:format"), 2),
        (format!("{base}:password:"), 2),
    ] {
        let e = error(&format!("{{{{ {typo} }}}}"));
        assert!(
            e.message
                .contains(&format!("{count} field(s) after the secret name")),
            "{typo}: {e}"
        );
        assert!(
            e.message.contains("NAME:JSON_KEY:VERSION_STAGE:VERSION_ID"),
            "the error shows the expected shape: {e}"
        );
        assert_eq!(e.column, 4, "the column of the ARN");
        assert!(Template::parse_bare_arn(&typo).is_err(), "{typo}");
    }
    assert_eq!(
        refs(&format!("{{{{ {base}::: }}}}")),
        [reference(base, &[])],
        "all three fields empty"
    );
}

#[test]
fn bad_arn_messages_escape_control_characters_and_stay_short() {
    let e = error("{{ arn:aws:s3\u{1b}]52;c;ZXZpbA==\u{7}:r:1:secret:x }}");
    assert!(
        !e.message.contains('\u{1b}') && !e.message.contains('\u{7}'),
        "{e:?}"
    );
    assert!(e.message.contains("\\u{1b}]52"), "{e:?}");
    let long = format!("arn:aws:secretsmanager:r:1:secret:{}", "x".repeat(10_000));
    let e = error(&format!("{{{{ {long}:a }}}}"));
    assert!(e.message.len() < 1_000, "{} bytes", e.message.len());
}

#[test]
fn bare_arn_field() {
    let t = Template::parse_bare_arn(
        " arn:aws:secretsmanager:eu-west-1:123456789012:secret:api:token:: ",
    )
    .unwrap();
    let p: Vec<_> = t.placeholders().collect();
    assert_eq!(p[0].reference.path, ["token"]);
    assert!(Template::parse_bare_arn("arn:aws:s3:::bucket").is_err());
    assert!(Template::parse_bare_arn("arn:aws:secretsmanager:r:a:secret:x trailing").is_err());
}

#[test]
fn filters_parse_and_chain() {
    let t = Template::parse("{{ secrets.db.password | urlencode }}{{ secrets.x|json|base64 }}")
        .unwrap();
    let filters: Vec<_> = t.placeholders().map(|p| p.filters.clone()).collect();
    assert_eq!(
        filters,
        [vec![Filter::UrlEncode], vec![Filter::Json, Filter::Base64]]
    );
}

#[test]
fn escape_renders_literal_braces() {
    assert_eq!(render_with("a {{ '{{' }} b }}", &[]), "a {{ b }}");
    assert_eq!(render_with(r#"{{"{{"}}"#, &[]), "{{");
}

#[test]
fn rendered_values_are_never_parsed_again() {
    let out = render_with("pw={{ secrets.p }}", &[("p", text("{{ secrets.other }}"))]);
    assert_eq!(out, "pw={{ secrets.other }}");
}

#[test]
fn filter_outputs() {
    let hostile = text("p@ss:w/rd#%?&\"é");
    assert_eq!(
        render_with("{{ secrets.p | urlencode }}", &[("p", hostile.clone())]),
        "p%40ss%3Aw%2Frd%23%25%3F%26%22%C3%A9"
    );
    assert_eq!(
        render_with("{{ secrets.p | json }}", &[("p", hostile.clone())]),
        "\"p@ss:w/rd#%?&\\\"é\""
    );
    assert_eq!(
        render_with("{{ secrets.p | base64 }}", &[("p", text("user:tok"))]),
        "dXNlcjp0b2s="
    );
    assert_eq!(
        render_with("{{ secrets.p | json }}", &[("p", text("a\nb\u{1}"))]),
        "\"a\\nb\\u0001\""
    );
}

#[test]
fn binary_renders_base64_unless_filtered() {
    let bytes = Value::Bytes(vec![0, 255, 16, b'a']);
    assert_eq!(
        render_with("{{ secrets.b }}", &[("b", bytes.clone())]),
        "AP8QYQ=="
    );
    assert_eq!(
        render_with("{{ secrets.b | urlencode }}", &[("b", bytes.clone())]),
        "%00%FF%10a"
    );
    assert_eq!(
        render_with("{{ secrets.b | json }}", &[("b", bytes)]),
        "\"AP8QYQ==\""
    );
}

#[test]
fn base64_padding() {
    for (input, expected) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
    ] {
        assert_eq!(crate::encode::base64(input.as_bytes()), expected);
    }
}

#[test]
fn unclosed_braces_point_at_the_opening() {
    let e = error("host={{ secrets.host");
    assert_eq!(e.column, 6);
    assert!(e.message.contains("unclosed `{{`"), "{e}");
    assert!(error("{{").message.contains("unclosed"));
    assert!(error("x {{ secrets.a |").message.contains("unclosed"));
}

#[test]
fn unknown_filter_is_named() {
    let e = error("{{ secrets.p | upper }}");
    assert_eq!(e.column, 16);
    assert!(e.message.contains("unknown filter `upper`"), "{e}");
    assert!(
        error("{{ secrets.p | }}")
            .message
            .contains("expected a filter name")
    );
}

#[test]
fn empty_names_and_keys() {
    assert!(
        error("{{ secrets. }}")
            .message
            .contains("empty secret name")
    );
    assert!(
        error("{{ secrets[''] }}")
            .message
            .contains("empty secret name")
    );
    assert!(error("{{ secrets.db. }}").message.contains("empty key"));
    assert!(
        error("{{ secrets.db[\"\"] }}")
            .message
            .contains("empty key")
    );
    assert!(error("{{ secrets }}").message.contains("expected `.NAME`"));
    assert!(error("{{ }}").message.contains("empty `{{ }}`"));
}

#[test]
fn dotted_form_rejects_special_characters_with_a_hint() {
    let e = error("{{ secrets.a/b }}");
    assert_eq!(e.column, 13);
    assert!(e.message.contains("bracket form"), "{e}");
}

#[test]
fn bad_arns_each_say_what_is_wrong() {
    assert!(
        error("{{ arn:aws:secretsmanager:us-east-1 }}")
            .message
            .contains("expected arn:aws:secretsmanager")
    );
    assert!(
        error("{{ arn:aws:s3:us-east-1:1:secret:x }}")
            .message
            .contains("service is `s3`")
    );
    assert!(
        error("{{ arn:aws:secretsmanager:us-east-1:1:parameter:x }}")
            .message
            .contains("resource type")
    );
    assert!(
        error("{{ arn:aws:secretsmanager::1:secret:x }}")
            .message
            .contains("empty region")
    );
    assert!(
        error("{{ arn:aws:secretsmanager:r:1:secret:x:k:AWSCURRENT:id }}")
            .message
            .contains("exclusive")
    );
    assert!(
        error("{{ arn:aws:secretsmanager:r:1:secret:x:k:s:i:extra }}")
            .message
            .contains("4 field(s) after the secret name")
    );
    assert!(
        error("{{workato:sm:key:arn:aws:secretsmanager:r:1:secret:x:extra}}")
            .message
            .contains("Workato")
    );
    assert!(
        error("{{workato:sm::arn:aws:secretsmanager:r:1:secret:x}}")
            .message
            .contains("empty key name")
    );
    assert!(error("{{workato:sm:key}}").message.contains("no `:arn:`"));
}

#[test]
fn unknown_expressions_and_trailing_garbage() {
    assert!(
        error("{{ password }}")
            .message
            .contains("expected `secrets.NAME`")
    );
    assert!(
        error("{{ secrets.a b }}")
            .message
            .contains("unexpected `b`")
    );
    assert!(
        error("{{ 'x' | json }}")
            .message
            .contains("only to secret references")
    );
    assert!(error("{{ 'abc }}").message.contains("unterminated string"));
    assert!(
        error(r"{{ secrets['a\n'] }}")
            .message
            .contains("unknown escape")
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    let e = error("é€{{ secrets.x | nope }}");
    assert_eq!(e.column, 18);
    let t = Template::parse("ü{{ secrets.x }}").unwrap();
    assert_eq!(t.placeholders().next().unwrap().column, 2);
}

#[test]
fn debug_output_never_shows_values() {
    let shown = format!("{:?}", Value::Text("canary-3f9a".into()));
    assert!(!shown.contains("canary"));
}

#[test]
fn debug_and_display_never_show_a_value_and_name_the_column() {
    assert_eq!(
        format!("{:?}", Value::Text(CANARY_TEXT.into())),
        "Text(****)"
    );
    assert_eq!(format!("{:?}", Value::Bytes(vec![1, 2])), "Bytes(****)");
    let r = Reference {
        name: "db".into(),
        path: vec!["user".into()],
        version_stage: Some("AWSPREVIOUS".into()),
        version_id: None,
    };
    assert_eq!(format!("{r:?}"), "db[\"user\"] (stage AWSPREVIOUS)");
    let e = error("{{ secrets }}");
    assert_eq!(e.to_string(), format!("column {}: {}", e.column, e.message));
    assert!(e.to_string().starts_with("column 4: "), "{e}");
}

const CANARY_TEXT: &str = "value-that-must-not-print";

#[test]
fn a_dotted_name_says_which_character_needs_the_bracket_form() {
    let e = error("{{ secrets.@x }}");
    assert!(
        e.message
            .contains("`@` cannot appear in a dotted secret name"),
        "{e}"
    );
    assert_eq!(e.column, 12);
    for empty in [
        "{{ secrets. }}",
        "{{ secrets.}}",
        "{{ secrets.| urlencode }}",
    ] {
        let e = error(empty);
        assert!(
            e.message.contains("empty secret name after `.`"),
            "{empty}: {e}"
        );
        assert_eq!(e.column, 11, "{empty}");
    }
    let e = error("{{ secrets.db.}}");
    assert!(e.message.contains("empty key after `.`"), "{e}");
}

#[test]
fn errors_inside_a_workato_arn_point_at_the_arn() {
    // `{{workato:sm:` is 13 characters, `key:` 4 more: the ARN is at 18.
    let e = error("{{workato:sm:key:arn:aws:s3:r:1:secret:x}}");
    assert!(e.message.contains("service is `s3`"), "{e}");
    assert_eq!(e.column, 18);
    let e = error("{{workato:sm:k:arn:aws:secretsmanager:r:1:secret:x:a:b:c}}");
    assert!(e.message.contains("Workato"), "{e}");
    assert_eq!(e.column, 16);
}
