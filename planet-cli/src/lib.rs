//! What Planet's two programs share as command-line tools, so that both
//! stay drop-in replacements for their Go originals the same way:
//! Go-style single-dash long flags ([`go_flags`]), Go duration syntax
//! ([`go_duration`]) and the original's log flags ([`logging`]); and
//! Planet's own `auto`-or-one-way flags ([`choice`]).

pub mod choice;
pub mod go_duration;
pub mod go_flags;
pub mod logging;
