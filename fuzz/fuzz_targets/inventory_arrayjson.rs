//! Fuzzes the arrayjson inventory parser, then the lookup structure built from
//! what it accepts. Must never panic or hang; lookups must agree with the
//! linear reference.

#![no_main]

use libfuzzer_sys::fuzz_target;
use planet_agent::collect::inventory::Format;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| common::check(Format::ArrayJson, data));
