//! The checked-in schema (docs/schema.graphql) is the schema the gateway serves.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn the_checked_in_schema_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/schema.graphql");
    let header = "# The kefu GraphQL schema. Generated from the gateway's code; do not edit by hand.\n\
                  # Regenerate: KEFU_BLESS=1 cargo test -p kefu-gateway --test sdl\n\n";
    let rendered = format!("{header}{}", kefu_gateway::schema::sdl());
    if std::env::var_os("KEFU_BLESS").is_some() {
        std::fs::write(path, &rendered).unwrap();
    }
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        on_disk == rendered,
        "docs/schema.graphql differs from the schema the gateway serves; run \
         `KEFU_BLESS=1 cargo test -p kefu-gateway --test sdl` and review the diff"
    );
}
