//! What Planet's two programs share as command-line tools, so that both
//! stay drop-in replacements for their Go originals the same way:
//! Go-style single-dash long flags ([`go_flags`]), Go duration syntax
//! ([`go_duration`]) and the original's log flags ([`logging`]); and
//! Planet's own `auto`-or-one-way flags ([`choice`]); one-line error
//! chains ([`errors`]), the one loop of periodic tasks ([`periodic`]) and
//! the runtime both run on ([`bootstrap`]).

pub mod bootstrap;
pub mod choice;
pub mod errors;
pub mod go_duration;
pub mod go_flags;
pub mod logging;
pub mod periodic;
