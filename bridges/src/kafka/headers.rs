//! A consumed message's headers, read through librdkafka's C API as bytes.
//!
//! rdkafka's `Headers::try_get` turns every header name into a `&str` with `unwrap`, so a
//! producer that sends a name that is not UTF-8 (Kafka does not check) would panic the consumer,
//! and with `panic = "abort"` end the process: catching the panic is no answer. [`each`] makes
//! the two calls rdkafka makes, `rd_kafka_message_headers` and `rd_kafka_header_get_all`,
//! without that `unwrap`, and hands names and values on as the bytes they are; the caller
//! decides what to do with a name that is not text. This is the crate's only `unsafe`: plain
//! FFI reads of memory librdkafka owns for as long as the message is borrowed, no shared state
//! and no concurrency, so there is nothing for a model checker to explore; it is exercised by
//! the hostile-header tests against librdkafka's mock cluster (`tests/tests/kafka_mock.rs`).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void, CStr};
use std::ptr;

use rdkafka::bindings::{rd_kafka_header_get_all, rd_kafka_headers_t, rd_kafka_message_headers};
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaRespErr;

/// Calls `visit` with the name and value of each header of `message`, in order.
pub(crate) fn each(message: &BorrowedMessage<'_>, mut visit: impl FnMut(&[u8], Option<&[u8]>)) {
    let mut headers: *mut rd_kafka_headers_t = ptr::null_mut();
    // SAFETY: `message.ptr()` is the live librdkafka message `message` borrows. The call
    // stores a pointer to the message's own header list in `headers` (parsing it on first
    // use), or returns an error when it has none; the list lives as long as the message.
    let err = unsafe { rd_kafka_message_headers(message.ptr(), &mut headers) };
    if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
        return;
    }
    for index in 0.. {
        let (mut name, mut value, mut size): (*const c_char, *const c_void, usize) =
            (ptr::null(), ptr::null(), 0);
        // SAFETY: `headers` is the valid list above; past its last header the call returns
        // an error and writes nothing. On success it points `name` at a NUL-terminated string
        // and `value` at `size` bytes (or null), both owned by the list.
        let err =
            unsafe { rd_kafka_header_get_all(headers, index, &mut name, &mut value, &mut size) };
        if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            return;
        }
        // SAFETY: `name` is NUL-terminated and owned by the list, which outlives this call.
        let name = unsafe { CStr::from_ptr(name) }.to_bytes();
        let value = (!value.is_null()).then(|| {
            // SAFETY: `value` points at `size` initialised bytes owned by the list.
            unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) }
        });
        visit(name, value);
    }
}
