//! What the derives generate.

use serde::{Deserialize, Serialize};
use tidings::codec::{DecodeError, EventSetCodec, Json};
use tidings::{Event, EventRef, EventSet, Member};

#[derive(Debug, PartialEq, Serialize, Deserialize, Event)]
struct UserCreated {
    id: u64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "billing.invoice-paid.v2", key = invoice)]
struct InvoicePaid {
    invoice: String,
    cents: u64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Event)]
#[event(key = 0)]
struct HTTPRequestSent(u32);

#[derive(Debug, PartialEq, Event)]
struct Generic<T: Send + Sync + 'static> {
    value: T,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Event)]
enum Status {
    Up,
    Down { reason: String },
}

#[derive(Debug, PartialEq, EventSet)]
enum Set {
    User(UserCreated),
    Invoice(InvoicePaid),
    Http(HTTPRequestSent),
    Status(Status),
}

#[derive(EventSet)]
#[event_set(no_codec)]
enum Local {
    Generic(Generic<std::time::Instant>),
}

#[derive(EventSet)]
enum Empty {}

#[test]
fn names_default_to_dotted_snake_case() {
    assert_eq!(UserCreated::NAME, "user.created");
    assert_eq!(HTTPRequestSent::NAME, "http.request.sent");
    assert_eq!(InvoicePaid::NAME, "billing.invoice-paid.v2");
    assert_eq!(Status::NAME, "status");
    assert_eq!(<Generic<u8>>::NAME, "generic");
}

#[test]
fn keys_come_from_the_named_field() {
    let paid = InvoicePaid {
        invoice: "inv-7".into(),
        cents: 1,
    };
    assert_eq!(paid.key().as_deref(), Some("inv-7"));
    assert_eq!(HTTPRequestSent(404).key().as_deref(), Some("404"));
    assert_eq!(UserCreated { id: 1 }.key(), None);
}

#[test]
fn sets_get_dense_indices_names_and_from() {
    assert_eq!(
        Set::NAMES,
        [
            "user.created",
            "billing.invoice-paid.v2",
            "http.request.sent",
            "status"
        ]
    );
    assert_eq!(<UserCreated as Member<Set>>::INDEX, 0);
    assert_eq!(<Status as Member<Set>>::INDEX, 3);
    let value = Set::from(HTTPRequestSent(1));
    assert_eq!(value.index(), 2);
    assert_eq!(value.name(), "http.request.sent");
    assert_eq!(Set::index_of("status"), Some(3));
    assert_eq!(Set::index_of("nope"), None);
    assert_eq!(Local::NAMES, ["generic"]);
    assert!(Empty::NAMES.is_empty());
}

#[test]
fn codec_round_trips_every_member_by_name() {
    let values = [
        Set::User(UserCreated { id: 1 }),
        Set::Invoice(InvoicePaid {
            invoice: "a".into(),
            cents: 5,
        }),
        Set::Http(HTTPRequestSent(500)),
        Set::Status(Status::Down {
            reason: "disk".into(),
        }),
    ];
    for value in values {
        let bytes = value.encode(&Json).unwrap();
        let back = Set::decode(value.name(), &bytes, &Json).unwrap();
        assert_eq!(back, value);
    }
    // The payload is the plain event, as a Node consumer's JSON.parse expects.
    let bytes = Set::User(UserCreated { id: 42 }).encode(&Json).unwrap();
    assert_eq!(bytes, br#"{"id":42}"#);
}

#[test]
fn encode_ref_encodes_an_erased_member() {
    let paid = InvoicePaid {
        invoice: "x".into(),
        cents: 3,
    };
    let bytes = Set::encode_ref(EventRef::new(&paid), &Json).unwrap();
    assert_eq!(bytes, br#"{"invoice":"x","cents":3}"#);
}

#[test]
fn decode_errors_are_specific() {
    match Set::decode("user.created", b"{\"id\": \"seven\"}", &Json) {
        Err(DecodeError::Payload { name, source }) => {
            assert_eq!(name, "user.created");
            assert!(source.to_string().contains("invalid type"), "{source}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        Set::decode("user.removed", b"{}", &Json),
        Err(DecodeError::UnknownEvent { .. })
    ));
    assert!(Set::decode("status", b"\xff\x00", &Json).is_err());
}

#[test]
fn visit_reaches_the_typed_member() {
    struct Name;
    impl tidings::event::Visitor<Set> for Name {
        type Output = &'static str;
        fn visit<E: Member<Set>>(self, _: E) -> &'static str {
            E::NAME
        }
    }
    assert_eq!(
        Set::Http(HTTPRequestSent(1)).visit(Name),
        "http.request.sent"
    );
}
