//! What every eBPF object of this crate carries besides its programs: the
//! license the kernel checks before it allows GPL-only helpers
//! (`bpf_probe_read_kernel`, `bpf_seq_write`, tracepoint attachments,
//! iterators), and the panic handler a `no_std` binary needs (the verifier
//! rejects any program that could reach it).

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
