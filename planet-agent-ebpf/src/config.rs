//! The layout global the loader fills in before the object is loaded.

use planet_common::ProbeConfig;

/// Offsets for the running kernel. Written by the loader (`EbpfLoader::set_global`)
/// and read-only afterwards.
#[unsafe(no_mangle)]
pub(crate) static PLANET_CONFIG: ProbeConfig = ProbeConfig::UNSET;

/// Reads one field of the layout global.
macro_rules! layout {
    ($field:ident) => {
        $crate::global::read_global!($crate::config::PLANET_CONFIG, $field)
    };
}
pub(crate) use layout;
