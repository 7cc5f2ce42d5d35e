//! Thin wrappers over the libc calls std does not expose, each retrying on EINTR
//! and returning exactly what the kernel returned.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use anyhow::{Context as _, bail};

/// Sets the calling thread's comm (and so the process name of a
/// single-threaded process); threads spawned afterwards inherit it.
pub fn set_comm(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.len() > 15 {
        bail!("--comm {name:?} must be 1..=15 bytes (the kernel's TASK_COMM_LEN - 1)");
    }
    let cname = CString::new(name).context("--comm contains a NUL byte")?;
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes
    // from the pointer, which `cname` provides and outlives the call.
    let rc = unsafe { libc::prctl(libc::PR_SET_NAME, cname.as_ptr(), 0, 0, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error()).context("prctl(PR_SET_NAME)");
    }
    Ok(())
}

fn retry_eintr(mut call: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        let rc = call();
        if rc >= 0 {
            return Ok(rc.unsigned_abs());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// `send(2)` with MSG_NOSIGNAL added to `flags`.
pub fn send(fd: RawFd, buf: &[u8], flags: i32) -> io::Result<usize> {
    retry_eintr(|| {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes during the call.
        unsafe {
            libc::send(
                fd,
                buf.as_ptr().cast(),
                buf.len(),
                flags | libc::MSG_NOSIGNAL,
            )
        }
    })
}

/// `recv(2)`.
pub fn recv(fd: RawFd, buf: &mut [u8], flags: i32) -> io::Result<usize> {
    retry_eintr(|| {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes during the call.
        unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) }
    })
}

/// `sendfile(2)` from `file` at `*offset`, advancing it.
pub fn sendfile(
    sock: RawFd,
    file: RawFd,
    offset: &mut libc::off_t,
    count: usize,
) -> io::Result<usize> {
    retry_eintr(|| {
        // SAFETY: `offset` is a valid, exclusive pointer for the call's duration.
        unsafe { libc::sendfile(sock, file, offset, count) }
    })
}

/// Waits until `fd` has one of `events`; fails after `timeout`.
pub fn poll(fd: RawFd, events: i16, timeout: Duration) -> io::Result<()> {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let ready = retry_eintr(|| {
        // SAFETY: `pfd` is one valid pollfd for the call's duration.
        let rc = unsafe { libc::poll(&mut pfd, 1, millis) };
        rc as isize
    })?;
    if ready == 0 {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "poll timed out"));
    }
    Ok(())
}

/// Sets SO_SNDBUF (the kernel doubles it and enforces a minimum).
pub fn set_sndbuf(fd: RawFd, bytes: i32) -> io::Result<()> {
    let len = libc::socklen_t::try_from(size_of::<i32>()).unwrap_or(4);
    // SAFETY: the option value points to a live i32 of the given length.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&raw const bytes).cast(),
            len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn is_would_block(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::WouldBlock
}

/// Restricts this process (and the threads it starts later) to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> anyhow::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET write within it and
    // sched_setaffinity reads exactly size_of::<cpu_set_t>() bytes.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error()).with_context(|| format!("pin to CPU {cpu}"));
    }
    Ok(())
}
