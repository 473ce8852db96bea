//! Every diagnostic the derives and the bus's bounds produce, pinned.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
