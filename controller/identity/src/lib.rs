//! # gavel-identity
//!
//! Device identity for Gavel (issue 9): the device CA that signs certificates for devices
//! ([`ca`]), and one-time enrollment tokens ([`enroll`]). The broker-side access rule is in
//! `gavel_protocol::acl`; the controller's TLS gate and API use this crate.

pub mod access;
pub mod ca;
pub mod enroll;
