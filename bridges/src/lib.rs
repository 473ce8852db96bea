//! Broker bridges for tidings.
