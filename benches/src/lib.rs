//! Unpublished helper crate: see the files beside this one.
