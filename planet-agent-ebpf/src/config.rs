//! The layout global the loader fills in before the object is loaded.

use planet_common::ProbeConfig;

/// Offsets for the running kernel. Written by the loader (`EbpfLoader::set_global`)
/// and read-only afterwards.
#[unsafe(no_mangle)]
pub(crate) static PLANET_CONFIG: ProbeConfig = ProbeConfig::UNSET;

/// Reads one field of the layout global. The volatile read keeps the
/// compiler from folding in the placeholder value the object was built with.
macro_rules! layout {
    ($field:ident) => {
        // SAFETY: the global is a plain static, valid for the program's lifetime.
        unsafe { core::ptr::read_volatile(&raw const $crate::config::PLANET_CONFIG.$field) }
    };
}
pub(crate) use layout;
