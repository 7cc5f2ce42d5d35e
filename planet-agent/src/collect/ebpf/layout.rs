//! Measures the running kernel's layouts for the programs: tracepoint record
//! offsets from tracefs `format` files and `struct sock_common` member
//! offsets from BTF. The result is the `ProbeConfig` global of the object.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

use planet_common::ProbeConfig;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum LayoutError {
    #[error("tracefs is not mounted (looked in /sys/kernel/tracing and /sys/kernel/debug/tracing)")]
    NoTracefs,
    #[error(
        "tracefs at {path} cannot be read; the agent needs CAP_DAC_READ_SEARCH (or tracefs mounted with a gid the agent has)"
    )]
    TracefsDenied {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tracepoint {event} does not exist on this kernel")]
    MissingEvent {
        event: String,
        #[source]
        source: std::io::Error,
    },
    #[error("tracepoint {event} has no field {field}")]
    MissingField { event: String, field: &'static str },
    #[error("tracepoint {event} field {field} is {size} bytes, expected {expected}")]
    FieldSize {
        event: String,
        field: &'static str,
        size: usize,
        expected: usize,
    },
    #[error("the kernel's BTF has no function {0}")]
    MissingFunction(&'static str),
    #[error("{function} has an unknown signature on this kernel: ({found})")]
    Signature {
        function: &'static str,
        found: String,
    },
    #[error("malformed format line in {event}: {line:?}")]
    Malformed { event: String, line: String },
}

/// One field of a tracepoint record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub offset: u16,
    pub size: usize,
}

/// The fields of a tracepoint record, parsed from its tracefs `format` file.
#[derive(Debug, Default)]
pub struct TracepointFormat {
    event: String,
    fields: HashMap<String, Field>,
}

impl TracepointFormat {
    /// Parses the text of `events/<category>/<name>/format`.
    pub fn parse(event: &str, text: &str) -> Result<Self, LayoutError> {
        let malformed = |line: &str| LayoutError::Malformed {
            event: event.to_owned(),
            line: line.to_owned(),
        };
        let mut fields = HashMap::new();
        for line in text.lines().map(str::trim) {
            let Some(rest) = line.strip_prefix("field:") else {
                continue;
            };
            // "<decl>;\toffset:N;\tsize:N;\tsigned:N;"
            let mut parts = rest.split(';').map(str::trim);
            let decl = parts.next().ok_or_else(|| malformed(line))?;
            let mut offset = None;
            let mut size = None;
            for part in parts {
                if let Some(v) = part.strip_prefix("offset:") {
                    offset = v.parse::<u16>().ok();
                } else if let Some(v) = part.strip_prefix("size:") {
                    size = v.parse::<usize>().ok();
                }
            }
            let (Some(offset), Some(size)) = (offset, size) else {
                return Err(malformed(line));
            };
            // The name is the last identifier of the declaration, without
            // any array suffix: "__u8 saddr_v6[16]" -> "saddr_v6".
            let base = decl.split('[').next().unwrap_or(decl);
            let name = base
                .rsplit([' ', '*', '\t'])
                .find(|s| !s.is_empty())
                .ok_or_else(|| malformed(line))?;
            fields.insert(name.to_owned(), Field { offset, size });
        }
        Ok(Self {
            event: event.to_owned(),
            fields,
        })
    }

    /// Offset of `field`, checking that it has the size the programs read.
    pub fn offset(&self, field: &'static str, expected: usize) -> Result<u16, LayoutError> {
        let f = self
            .fields
            .get(field)
            .ok_or_else(|| LayoutError::MissingField {
                event: self.event.clone(),
                field,
            })?;
        if f.size != expected {
            return Err(LayoutError::FieldSize {
                event: self.event.clone(),
                field,
                size: f.size,
                expected,
            });
        }
        Ok(f.offset)
    }
}

/// The tracefs mount, mounting it at the standard place if nothing is mounted.
pub fn tracefs_root() -> Result<PathBuf, LayoutError> {
    const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
    if let Some(found) = find_tracefs(&CANDIDATES)? {
        return Ok(found);
    }
    mount_tracefs(Path::new(CANDIDATES[0]));
    find_tracefs(&CANDIDATES)?.ok_or(LayoutError::NoTracefs)
}

/// The first candidate with an `events` directory. A mount point the agent
/// may not enter (tracefs is mode 0700 by default) is an error of its own,
/// not "not mounted".
fn find_tracefs(candidates: &[&str]) -> Result<Option<PathBuf>, LayoutError> {
    for candidate in candidates.iter().map(Path::new) {
        match fs::metadata(candidate.join("events")) {
            Ok(meta) if meta.is_dir() => return Ok(Some(candidate.to_path_buf())),
            Err(source) if source.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(LayoutError::TracefsDenied {
                    path: candidate.to_path_buf(),
                    source,
                });
            }
            Ok(_) | Err(_) => {}
        }
    }
    Ok(None)
}

fn mount_tracefs(at: &Path) {
    let Ok(target) = std::ffi::CString::new(at.as_os_str().as_encoded_bytes()) else {
        return;
    };
    // SAFETY: all pointers are valid NUL-terminated strings for the call.
    let rc = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        tracing::info!(path = %at.display(), "mounted tracefs");
    } else {
        tracing::debug!(path = %at.display(), error = %std::io::Error::last_os_error(), "could not mount tracefs");
    }
}

/// Reads and parses the format of `category:name`.
pub fn read_format(
    tracefs: &Path,
    category: &str,
    name: &str,
) -> Result<TracepointFormat, LayoutError> {
    let event = format!("{category}:{name}");
    let path = tracefs
        .join("events")
        .join(category)
        .join(name)
        .join("format");
    let text = fs::read_to_string(&path).map_err(|source| LayoutError::MissingEvent {
        event: event.clone(),
        source,
    })?;
    TracepointFormat::parse(&event, &text)
}

/// Fills the length-tracepoint offsets from `sock:sock_send_length`'s format
/// and checks that `sock:sock_recv_length` has the same layout.
pub fn length_tracepoints(
    config: &mut ProbeConfig,
    send: &TracepointFormat,
    recv: &TracepointFormat,
) -> Result<(), LayoutError> {
    for format in [send, recv] {
        config.len_sk = format.offset("sk", 8)?;
        config.len_protocol = format.offset("protocol", 2)?;
        config.len_ret = format.offset("ret", 4)?;
        config.len_flags = format.offset("flags", 4)?;
    }
    config.len_fixed_layout = u16::from(
        [
            config.len_sk,
            config.len_protocol,
            config.len_ret,
            config.len_flags,
        ] == planet_common::config::LENGTH_LAYOUT,
    );
    // Both events share one class; a kernel where they differ is rejected.
    let same = |field, size| send.offset(field, size).ok() == recv.offset(field, size).ok();
    if !(same("sk", 8) && same("protocol", 2) && same("ret", 4) && same("flags", 4)) {
        return Err(LayoutError::MissingField {
            event: "sock:sock_recv_length (layout differs from sock_send_length)".into(),
            field: "sk",
        });
    }
    Ok(())
}

/// Fills the `sock:inet_sock_set_state` offsets.
pub fn state_tracepoint(config: &mut ProbeConfig, f: &TracepointFormat) -> Result<(), LayoutError> {
    config.state_skaddr = f.offset("skaddr", 8)?;
    config.state_oldstate = f.offset("oldstate", 4)?;
    config.state_newstate = f.offset("newstate", 4)?;
    config.state_sport = f.offset("sport", 2)?;
    config.state_dport = f.offset("dport", 2)?;
    config.state_family = f.offset("family", 2)?;
    config.state_protocol = f.offset("protocol", 2)?;
    config.state_saddr = f.offset("saddr", 4)?;
    config.state_daddr = f.offset("daddr", 4)?;
    config.state_saddr_v6 = f.offset("saddr_v6", 16)?;
    config.state_daddr_v6 = f.offset("daddr_v6", 16)?;
    let measured = planet_common::config::StateLayout {
        skaddr: config.state_skaddr,
        oldstate: config.state_oldstate,
        newstate: config.state_newstate,
        sport: config.state_sport,
        dport: config.state_dport,
        family: config.state_family,
        protocol: config.state_protocol,
        saddr: config.state_saddr,
        daddr: config.state_daddr,
        saddr_v6: config.state_saddr_v6,
        daddr_v6: config.state_daddr_v6,
    };
    config.state_fixed_layout = u16::from(measured == planet_common::config::STATE_LAYOUT);
    Ok(())
}

/// Fills the optional `tcp:tcp_destroy_sock` offset.
pub fn destroy_tracepoint(
    config: &mut ProbeConfig,
    f: &TracepointFormat,
) -> Result<(), LayoutError> {
    config.destroy_skaddr = f.offset("skaddr", 8)?;
    Ok(())
}

/// Where the running kernel publishes its BTF; `-kernel-btf` can name
/// another file for the type layouts.
pub const KERNEL_BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

/// The running kernel's BTF, parsed once per probe-mode attempt.
pub struct KernelBtf {
    btf: btf_rs::Btf,
}

impl KernelBtf {
    /// `None` when the kernel has no BTF; callers fall back or say why.
    pub fn open(path: &Path) -> Option<Self> {
        btf_rs::Btf::from_file(path).ok().map(|btf| Self { btf })
    }

    /// IPv6 address offsets inside `struct sock_common`.
    ///
    /// `None` (the programs then leave IPv6 addresses of sockets that
    /// predate them to user space) when the members are missing (a kernel
    /// without IPv6).
    pub fn sock_v6_offsets(&self) -> Option<(u16, u16)> {
        Some((
            self.member_offset("sock_common", "skc_v6_daddr")?,
            self.member_offset("sock_common", "skc_v6_rcv_saddr")?,
        ))
    }

    /// Offset of `struct sock`'s `sk_protocol`, where it is a whole `u16`
    /// (Linux 5.6 on; before, it was a bitfield).
    pub fn sock_protocol_offset(&self) -> Option<u16> {
        self.member_offset("sock", "sk_protocol")
    }

    /// Byte offset of a byte-aligned, non-bitfield member of a struct, as
    /// the programs' `u16` offsets hold it.
    fn member_offset(&self, structure: &str, member: &str) -> Option<u16> {
        let layout = self.member(structure, member)?;
        u16::try_from(layout.offset).ok()
    }

    /// Byte offset and size of `member` in `struct strukt`, looking inside
    /// anonymous structs and unions. `None` when either is missing (or the
    /// member is a bitfield).
    pub fn member(&self, strukt: &str, member: &str) -> Option<MemberLayout> {
        let btf = &self.btf;
        let found = btf
            .resolve_types_by_name(strukt)
            .ok()?
            .into_iter()
            .find_map(|t| match t {
                btf_rs::Type::Struct(s) => Some(s),
                _ => None,
            })?;
        self.find_member(&found, member, 0)
    }

    fn find_member(
        &self,
        strukt: &btf_rs::Struct,
        wanted: &str,
        base_bits: u32,
    ) -> Option<MemberLayout> {
        let btf = &self.btf;
        for m in &strukt.members {
            if m.bitfield_size().is_some_and(|bits| bits != 0) {
                continue;
            }
            let bits = base_bits + m.bit_offset();
            let name = btf.resolve_name(m).unwrap_or_default();
            let ty = btf.resolve_chained_type(m).ok()?;
            if name == wanted {
                return Some(MemberLayout {
                    offset: bits / 8,
                    size: self.size_of(&ty)?,
                });
            }
            if name.is_empty()
                && let btf_rs::Type::Struct(inner) | btf_rs::Type::Union(inner) = &ty
                && let Some(found) = self.find_member(inner, wanted, bits)
            {
                return Some(found);
            }
        }
        None
    }

    /// Size in bytes of a type, through typedefs and qualifiers.
    fn size_of(&self, ty: &btf_rs::Type) -> Option<usize> {
        use btf_rs::Type;
        let mut ty = ty.clone();
        // Typedef chains are short; the bound only guards malformed BTF.
        for _ in 0..16 {
            ty = match &ty {
                Type::Int(i) => return Some(i.size()),
                Type::Ptr(_) => return Some(size_of::<u64>()),
                Type::Enum(e) => return Some(e.size()),
                Type::Enum64(e) => return Some(e.size()),
                Type::Struct(s) | Type::Union(s) => return Some(s.size()),
                Type::Array(a) => {
                    let elem = self.btf.resolve_chained_type(a).ok()?;
                    return Some(a.len() * self.size_of(&elem)?);
                }
                Type::Typedef(t) => self.btf.resolve_chained_type(t).ok()?,
                Type::Const(t) => self.btf.resolve_chained_type(t).ok()?,
                Type::Volatile(t) => self.btf.resolve_chained_type(t).ok()?,
                Type::Restrict(t) => self.btf.resolve_chained_type(t).ok()?,
                Type::TypeTag(t) => self.btf.resolve_chained_type(t).ok()?,
                _ => return None,
            };
        }
        None
    }

    /// Parameter names of the kernel function `name`, in order.
    pub fn parameters(&self, name: &str) -> Option<Vec<String>> {
        let btf = &self.btf;
        let func = btf
            .resolve_types_by_name(name)
            .ok()?
            .into_iter()
            .find_map(|t| match t {
                btf_rs::Type::Func(func) => Some(func),
                _ => None,
            })?;
        let btf_rs::Type::FuncProto(proto) = btf.resolve_chained_type(&func).ok()? else {
            return None;
        };
        proto
            .parameters
            .iter()
            .map(|p| btf.resolve_name(p).ok())
            .collect()
    }

    /// Whether the kernel has a function `name` (it may still be inlined
    /// away; BTF lists only functions with a symbol).
    pub fn has_function(&self, name: &str) -> bool {
        self.parameters(name).is_some()
    }

    /// Which `tcp_recvmsg` the kernel has.
    pub fn recv_signature(&self) -> Result<RecvSignature, LayoutError> {
        let params = self
            .parameters("tcp_recvmsg")
            .ok_or(LayoutError::MissingFunction("tcp_recvmsg"))?;
        RecvSignature::from_parameters(&params)
    }
}

/// Where a structure member lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberLayout {
    /// Byte offset from the start of the structure.
    pub offset: u32,
    /// Size in bytes.
    pub size: usize,
}

/// The signatures `tcp_recvmsg` has had, by parameter count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvSignature {
    /// `(sk, msg, len, nonblock, flags, addr_len)`: before Linux 5.19.
    Nonblock6,
    /// `(sk, msg, len, flags, addr_len)`: Linux 5.19 until `addr_len` went.
    Flags5,
    /// `(sk, msg, len, flags)`: current kernels.
    Flags4,
}

impl RecvSignature {
    /// Matches parameter names against the signatures the programs know.
    pub fn from_parameters(params: &[String]) -> Result<Self, LayoutError> {
        let names: Vec<&str> = params.iter().map(String::as_str).collect();
        match names.as_slice() {
            ["sk", "msg", "len", "nonblock", "flags", "addr_len"] => Ok(Self::Nonblock6),
            ["sk", "msg", "len", "flags", "addr_len"] => Ok(Self::Flags5),
            ["sk", "msg", "len", "flags"] => Ok(Self::Flags4),
            _ => Err(LayoutError::Signature {
                function: "tcp_recvmsg",
                found: names.join(", "),
            }),
        }
    }

    /// Index of `flags`.
    pub fn flags_arg(self) -> u16 {
        match self {
            Self::Nonblock6 => 4,
            Self::Flags5 | Self::Flags4 => 3,
        }
    }
}

/// `major.minor` of the running kernel, for the facts BTF cannot give
/// when the kernel has none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
}

impl KernelVersion {
    /// Parses a release such as `6.1.0-27-cloud-amd64`.
    pub fn parse(release: &str) -> Option<Self> {
        let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Self { major, minor })
    }

    pub fn running() -> Option<Self> {
        Self::parse(&fs::read_to_string("/proc/sys/kernel/osrelease").ok()?)
    }

    /// Linux 5.19 dropped `tcp_recvmsg`'s `nonblock` parameter. (Whether
    /// `addr_len` follows `flags` does not matter to register reads.)
    pub fn recv_flags_arg(self) -> u16 {
        if self
            < (Self {
                major: 5,
                minor: 19,
            })
        {
            4
        } else {
            3
        }
    }

    /// Linux 6.5 removed `tcp_sendpage`; `sendfile` and `splice` then go
    /// through `tcp_sendmsg` with `MSG_SPLICE_PAGES`.
    pub fn has_tcp_sendpage(self) -> bool {
        self < (Self { major: 6, minor: 5 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEND: &str = "name: sock_send_length
ID: 2284
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:void * sk;\toffset:8;\tsize:8;\tsigned:0;
\tfield:__u16 family;\toffset:16;\tsize:2;\tsigned:0;
\tfield:__u16 protocol;\toffset:18;\tsize:2;\tsigned:0;
\tfield:int ret;\toffset:20;\tsize:4;\tsigned:1;
\tfield:int flags;\toffset:24;\tsize:4;\tsigned:1;

print fmt: \"sk address = %p\", REC->sk
";

    const STATE: &str = "format:
\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;
\tfield:int newstate;\toffset:20;\tsize:4;\tsigned:1;
\tfield:__u16 sport;\toffset:24;\tsize:2;\tsigned:0;
\tfield:__u16 dport;\toffset:26;\tsize:2;\tsigned:0;
\tfield:__u16 family;\toffset:28;\tsize:2;\tsigned:0;
\tfield:__u16 protocol;\toffset:30;\tsize:2;\tsigned:0;
\tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;
\tfield:__u8 daddr[4];\toffset:36;\tsize:4;\tsigned:0;
\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:__u8 daddr_v6[16];\toffset:56;\tsize:16;\tsigned:0;
";

    #[test]
    fn knows_every_recvmsg_signature() {
        let sig = |s: &str| {
            RecvSignature::from_parameters(&s.split(' ').map(String::from).collect::<Vec<_>>())
        };
        let flags5 = sig("sk msg len flags addr_len").unwrap();
        assert_eq!((flags5, flags5.flags_arg()), (RecvSignature::Flags5, 3));
        let nonblock6 = sig("sk msg len nonblock flags addr_len").unwrap();
        assert_eq!(
            (nonblock6, nonblock6.flags_arg()),
            (RecvSignature::Nonblock6, 4)
        );
        assert_eq!(sig("sk msg len flags").unwrap(), RecvSignature::Flags4);
        let err = sig("sk msg flags").unwrap_err();
        assert!(err.to_string().contains("(sk, msg, flags)"), "{err}");
    }

    #[test]
    fn kernel_versions_decide_what_btf_cannot() {
        let v = |s| KernelVersion::parse(s).unwrap();
        assert_eq!(
            v("5.10.0-33-cloud-amd64"),
            KernelVersion {
                major: 5,
                minor: 10
            }
        );
        assert_eq!(v("6.18.0\n").minor, 18);
        assert!(KernelVersion::parse("garbage").is_none());
        assert_eq!(v("5.10.0").recv_flags_arg(), 4);
        assert_eq!(v("5.19.1").recv_flags_arg(), 3);
        assert!(v("6.1.0-27-amd64").has_tcp_sendpage());
        assert!(!v("6.12.9").has_tcp_sendpage());
    }

    #[test]
    fn parses_length_tracepoints() {
        let send = TracepointFormat::parse("sock:sock_send_length", SEND).unwrap();
        let recv = TracepointFormat::parse("sock:sock_recv_length", SEND).unwrap();
        let mut config = ProbeConfig::UNSET;
        length_tracepoints(&mut config, &send, &recv).unwrap();
        assert_eq!(
            (
                config.len_sk,
                config.len_protocol,
                config.len_ret,
                config.len_flags
            ),
            (8, 18, 20, 24)
        );
    }

    #[test]
    fn parses_arrays_and_pointers() {
        let f = TracepointFormat::parse("sock:inet_sock_set_state", STATE).unwrap();
        let mut config = ProbeConfig::UNSET;
        state_tracepoint(&mut config, &f).unwrap();
        assert_eq!(config.state_skaddr, 8);
        assert_eq!(config.state_saddr, 32);
        assert_eq!(config.state_daddr_v6, 56);
        assert_eq!(config.state_protocol, 30);
        assert_eq!(config.state_fixed_layout, 1, "the layout since 4.16");

        // Any field elsewhere: the program reads at the measured offsets.
        let moved = STATE.replace("daddr_v6[16];\toffset:56", "daddr_v6[16];\toffset:64");
        let f = TracepointFormat::parse("sock:inet_sock_set_state", &moved).unwrap();
        state_tracepoint(&mut config, &f).unwrap();
        assert_eq!(config.state_daddr_v6, 64);
        assert_eq!(config.state_fixed_layout, 0);
    }

    #[test]
    fn rejects_missing_and_resized_fields() {
        let old_kernel = STATE.replace(
            "\tfield:__u16 protocol;\toffset:30;\tsize:2;\tsigned:0;\n",
            "",
        );
        let f = TracepointFormat::parse("sock:inet_sock_set_state", &old_kernel).unwrap();
        let mut config = ProbeConfig::UNSET;
        let err = state_tracepoint(&mut config, &f).unwrap_err();
        assert!(
            matches!(
                err,
                LayoutError::MissingField {
                    field: "protocol",
                    ..
                }
            ),
            "{err}"
        );

        let wide = SEND.replace(
            "int ret;\toffset:20;\tsize:4",
            "long ret;\toffset:20;\tsize:8",
        );
        let f = TracepointFormat::parse("sock:sock_send_length", &wide).unwrap();
        let err = f.offset("ret", 4).unwrap_err();
        assert!(
            matches!(err, LayoutError::FieldSize { size: 8, .. }),
            "{err}"
        );
    }

    #[test]
    fn rejects_malformed_lines() {
        let err =
            TracepointFormat::parse("x:y", "\tfield:int ret;\toffset:;\tsize:4;").unwrap_err();
        assert!(matches!(err, LayoutError::Malformed { .. }));
    }

    #[test]
    fn reads_this_kernels_btf_when_present() {
        let path = Path::new("/sys/kernel/btf/vmlinux");
        if !path.exists() {
            eprintln!("no BTF on this kernel: KernelBtf::open returns None");
            assert!(KernelBtf::open(path).is_none());
            return;
        }
        let btf = KernelBtf::open(path).expect("readable BTF");
        let (daddr, rcv_saddr) = btf.sock_v6_offsets().expect("sock_common in BTF");
        // Past the stable 20-byte prefix, 16 bytes apart, in that order.
        assert!(daddr >= 20, "{daddr}");
        assert_eq!(rcv_saddr, daddr + 16);
        // `struct sock` starts with its `sock_common`; `sk_protocol` is a
        // whole u16 past it on every kernel with the length tracepoints.
        let protocol = btf.sock_protocol_offset().expect("sk_protocol in BTF");
        assert!(protocol > rcv_saddr, "{protocol}");
        assert_eq!(protocol % 2, 0);
        assert_eq!(btf.member_offset("sock_common", "skc_family"), Some(16));
        // Whatever this kernel's tcp_recvmsg looks like, it is a known one.
        btf.recv_signature().expect("a known tcp_recvmsg signature");
        assert!(btf.has_function("tcp_sendmsg"));
    }
}
