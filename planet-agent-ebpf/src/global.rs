//! Reading the read-only globals the loader fills in before load.

/// Reads `$global.$field` with a volatile load, so the compiler never folds
/// in the placeholder value the object was built with: the loader writes
/// the running kernel's values into the object before the kernel sees it.
macro_rules! read_global {
    ($global:path, $field:ident) => {
        // SAFETY: the global is a plain static, valid for the program's lifetime.
        unsafe { core::ptr::read_volatile(&raw const $global.$field) }
    };
}
pub(crate) use read_global;
