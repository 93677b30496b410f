//! Just enough of a BTF reader to find struct member offsets in the running
//! kernel (`/sys/kernel/btf/vmlinux`), so the kernel program reads `tcp_sock`
//! byte counters and `sock_common` IPv6 addresses at this kernel's offsets rather
//! than at offsets fixed when it was compiled.
use std::path::Path;

const MAGIC: u16 = 0xeb9f;

/// Sizes of the data that follows a type record, by BTF kind.
fn extra_len(kind: u32, vlen: usize) -> Option<usize> {
    Some(match kind {
        1 => 4,                    // INT
        2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, TYPEDEF..FUNC, FLOAT, TYPE_TAG
        3 => 12,                   // ARRAY
        4 | 5 => 12 * vlen,        // STRUCT, UNION
        6 => 8 * vlen,             // ENUM
        13 => 8 * vlen,            // FUNC_PROTO
        14 => 4,                   // VAR
        15 => 12 * vlen,           // DATASEC
        17 => 4,                   // DECL_TAG
        19 => 12 * vlen,           // ENUM64
        _ => return None,
    })
}

/// One type record, decoded from `data` when asked for.
struct Ty {
    name_off: u32,
    kind: u32,
    kind_flag: bool,
    /// Offset of the member array (STRUCT/UNION) or parameters (FUNC_PROTO) in `data`.
    members_at: usize,
    /// `size` or `type` word: for FUNC, the id of its FUNC_PROTO.
    size_or_type: u32,
    vlen: usize,
}

pub struct Btf {
    data: Vec<u8>,
    strings_start: usize,
    strings_len: usize,
    /// Where type id N's record starts in `data` is `types[N - 1]`; id 0 is
    /// void. Only offsets are kept (the records are decoded when asked for):
    /// a kernel has over 100,000 types, read at the agent's start, its peak.
    types: Vec<u32>,
}

/// BTF kinds looked up by name.
pub const KIND_TYPEDEF: u32 = 8;
pub const KIND_FUNC: u32 = 12;
const KIND_FWD: u32 = 7;

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The running kernel's BTF.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

impl Btf {
    pub fn from_sys_fs() -> Result<Btf, String> {
        Btf::from_file(Path::new(KERNEL_BTF))
    }

    pub fn from_file(path: &Path) -> Result<Btf, String> {
        let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Btf::parse(data).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses little-endian BTF (the only byte order netta's BPF target uses).
    pub fn parse(data: Vec<u8>) -> Result<Btf, String> {
        let bad = || "malformed BTF".to_string();
        let magic =
            u16::from_le_bytes(data.get(0..2).ok_or_else(bad)?.try_into().unwrap_or([0; 2]));
        if magic != MAGIC {
            return Err("not little-endian BTF".into());
        }
        let hdr_len = u32_at(&data, 4).ok_or_else(bad)? as usize;
        let type_off = u32_at(&data, 8).ok_or_else(bad)? as usize;
        let type_len = u32_at(&data, 12).ok_or_else(bad)? as usize;
        let str_off = u32_at(&data, 16).ok_or_else(bad)? as usize;
        let str_len = u32_at(&data, 20).ok_or_else(bad)? as usize;
        let types_start = hdr_len.checked_add(type_off).ok_or_else(bad)?;
        let types_end = types_start.checked_add(type_len).ok_or_else(bad)?;
        let strings_start = hdr_len.checked_add(str_off).ok_or_else(bad)?;
        if types_end > data.len() || strings_start.saturating_add(str_len) > data.len() {
            return Err(bad());
        }
        let mut types = Vec::new();
        let mut at = types_start;
        while at < types_end {
            let info = u32_at(&data, at + 4).ok_or_else(bad)?;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let extra = extra_len(kind, vlen).ok_or_else(|| format!("unknown BTF kind {kind}"))?;
            u32_at(&data, at + 8).ok_or_else(bad)?;
            types.push(u32::try_from(at).map_err(|_| bad())?);
            at += 12 + extra;
        }
        Ok(Btf {
            data,
            strings_start,
            strings_len: str_len,
            types,
        })
    }

    /// Type record `idx` (id `idx + 1`); parsing checked its 12 bytes are there.
    fn ty(&self, idx: usize) -> Option<Ty> {
        let at = *self.types.get(idx)? as usize;
        let info = u32_at(&self.data, at + 4)?;
        Some(Ty {
            name_off: u32_at(&self.data, at)?,
            kind: (info >> 24) & 0x1f,
            kind_flag: info >> 31 == 1,
            members_at: at + 12,
            size_or_type: u32_at(&self.data, at + 8)?,
            vlen: (info & 0xffff) as usize,
        })
    }

    /// Index of the first type of `kind` named `name`.
    fn index_of(&self, kind: u32, name: &str) -> Option<usize> {
        (0..self.types.len()).find(|&i| {
            self.ty(i)
                .is_some_and(|t| t.kind == kind && self.name(t.name_off) == name.as_bytes())
        })
    }

    /// A BTF blob that has, at their ids in this BTF, only the named types an
    /// fentry/fexit (`FUNC`) or BTF tracepoint (`TYPEDEF btf_trace_<name>`)
    /// program attaches by; every other id is a nameless forward declaration.
    /// aya looks the attach target up by name in a parsed BTF: given this, it
    /// parses a few hundred KiB, not the whole kernel BTF (about 15 MiB more at
    /// the agent's peak). `None` if a name is missing.
    pub fn attach_targets(&self, wanted: &[(u32, &str)]) -> Option<Vec<u8>> {
        let mut named = Vec::new();
        let mut strings = vec![0u8];
        for (kind, name) in wanted {
            let id = self.index_of(*kind, name)? + 1;
            named.push((id, *kind, u32::try_from(strings.len()).ok()?));
            strings.extend_from_slice(name.as_bytes());
            strings.push(0);
        }
        let last = named.iter().map(|(id, _, _)| *id).max().unwrap_or(0);
        let mut types = Vec::with_capacity(12 * last);
        for id in 1..=last {
            let (kind, name_off) = named
                .iter()
                .find(|(i, _, _)| *i == id)
                .map_or((KIND_FWD, 0), |(_, k, n)| (*k, *n));
            for w in [name_off, kind << 24, 0] {
                types.extend_from_slice(&w.to_le_bytes());
            }
        }
        let mut blob = Vec::with_capacity(24 + types.len() + strings.len());
        blob.extend_from_slice(&MAGIC.to_le_bytes());
        blob.extend_from_slice(&[1, 0]);
        let (tl, sl) = (
            u32::try_from(types.len()).ok()?,
            u32::try_from(strings.len()).ok()?,
        );
        for w in [24, 0, tl, tl, sl] {
            blob.extend_from_slice(&w.to_le_bytes());
        }
        blob.extend_from_slice(&types);
        blob.extend_from_slice(&strings);
        Some(blob)
    }

    fn name(&self, off: u32) -> &[u8] {
        let start = self.strings_start + off as usize;
        let end = self.strings_start + self.strings_len;
        let s = self.data.get(start..end).unwrap_or(&[]);
        &s[..s.iter().position(|b| *b == 0).unwrap_or(s.len())]
    }

    /// Byte offset of `member` in `struct name`, looking through anonymous
    /// structs and unions. `None` if either is missing or the member is a bitfield.
    pub fn member_offset(&self, name: &str, member: &str) -> Option<u32> {
        let id = self.index_of(4, name)?;
        self.find_member(id, member.as_bytes(), 0)
            .filter(|bits| bits % 8 == 0)
            .map(|bits| bits / 8)
    }

    /// Number of parameters of kernel function `name`, `None` if BTF has no such
    /// function (it may have been inlined or renamed).
    pub fn func_params(&self, name: &str) -> Option<usize> {
        let f = self.ty(self.index_of(KIND_FUNC, name)?)?;
        let proto = self.ty((f.size_or_type as usize).checked_sub(1)?)?;
        (proto.kind == 13).then_some(proto.vlen)
    }

    /// The type id of kernel function `name` (what an fentry/fexit attaches by).
    pub fn func_id(&self, name: &str) -> Option<u32> {
        u32::try_from(self.index_of(KIND_FUNC, name)? + 1).ok()
    }

    fn find_member(&self, idx: usize, member: &[u8], base_bits: u32) -> Option<u32> {
        let t = self.ty(idx)?;
        if t.kind != 4 && t.kind != 5 {
            return None;
        }
        for i in 0..t.vlen {
            let at = t.members_at + i * 12;
            let name_off = u32_at(&self.data, at)?;
            let type_id = u32_at(&self.data, at + 4)? as usize;
            let raw = u32_at(&self.data, at + 8)?;
            let bits = if t.kind_flag { raw & 0x00ff_ffff } else { raw };
            let name = self.name(name_off);
            if name == member {
                return Some(base_bits + bits);
            }
            if name.is_empty() && type_id > 0 {
                if let Some(off) = self.find_member(type_id - 1, member, base_bits + bits) {
                    return Some(off);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny BTF blob: struct s { int a; union { int b; int c; }; }.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0s\0a\0b\0c\0";
        let mut types = Vec::new();
        let push = |v: &mut Vec<u8>, words: &[u32]| {
            for w in words {
                v.extend_from_slice(&w.to_le_bytes());
            }
        };
        // [1] int: name "int"(1), kind INT, size 4, encoding
        push(&mut types, &[1, 1 << 24, 4, 32]);
        // [2] struct s: name "s"(5), 2 members, size 8
        push(&mut types, &[5, (4 << 24) | 2, 8]);
        push(&mut types, &[7, 1, 0]); // a at bit 0
        push(&mut types, &[0, 3, 32]); // anonymous union at bit 32
                                       // [3] union: 2 members
        push(&mut types, &[0, (5 << 24) | 2, 4]);
        push(&mut types, &[9, 1, 0]); // b
        push(&mut types, &[11, 1, 0]); // c
        let mut data = Vec::new();
        data.extend_from_slice(&MAGIC.to_le_bytes());
        data.extend_from_slice(&[1, 0]);
        push(
            &mut data,
            &[
                24,
                0,
                types.len() as u32,
                types.len() as u32,
                strings.len() as u32,
            ],
        );
        data.extend_from_slice(&types);
        data.extend_from_slice(strings);
        data
    }

    #[test]
    fn finds_members_through_anonymous_unions() {
        let btf = Btf::parse(blob()).unwrap();
        assert_eq!(btf.member_offset("s", "a"), Some(0));
        assert_eq!(btf.member_offset("s", "c"), Some(4));
        assert_eq!(btf.member_offset("s", "nope"), None);
        assert_eq!(btf.member_offset("t", "a"), None);
    }

    #[test]
    fn truncated_or_foreign_data_is_an_error() {
        let b = blob();
        for n in [0, 3, 10, 30, b.len() - 1] {
            assert!(Btf::parse(b[..n].to_vec()).is_err(), "{n}");
        }
        assert!(Btf::parse(vec![0x9f, 0xeb, 1, 0]).is_err());
    }

    #[test]
    fn function_ids_agree_with_aya() {
        let (Ok(ours), Ok(aya)) = (Btf::from_sys_fs(), aya::Btf::from_sys_fs()) else {
            eprintln!("no kernel BTF here");
            return;
        };
        for f in ["inet_csk_accept", "udp_sendmsg", "tcp_v4_send_reset"] {
            let theirs = aya
                .id_by_type_name_kind(f, aya_obj::btf::BtfKind::Func)
                .ok();
            assert_eq!(ours.func_id(f), theirs, "{f}");
            assert!(theirs.is_some(), "{f}");
        }
        assert_eq!(ours.func_id("no_such_function_here"), None);
    }

    #[test]
    fn aya_finds_attach_targets_at_the_kernels_ids_in_the_small_blob() {
        let (Ok(ours), Ok(aya)) = (Btf::from_sys_fs(), aya::Btf::from_sys_fs()) else {
            eprintln!("no kernel BTF here");
            return;
        };
        use aya_obj::btf::BtfKind;
        let wanted = [
            (KIND_FUNC, "inet_csk_accept"),
            (KIND_FUNC, "tcp_event_data_recv"),
            (KIND_TYPEDEF, "btf_trace_inet_sock_set_state"),
        ];
        let blob = ours.attach_targets(&wanted).unwrap();
        let small = aya::Btf::parse(&blob, aya::Endianness::default()).unwrap();
        for (kind, name) in wanted {
            let kind = if kind == KIND_FUNC {
                BtfKind::Func
            } else {
                BtfKind::Typedef
            };
            let full = aya.id_by_type_name_kind(name, kind).unwrap();
            assert_eq!(
                small.id_by_type_name_kind(name, kind).unwrap(),
                full,
                "{name}"
            );
        }
        assert!(blob.len() < 2 << 20, "{} bytes", blob.len());
        assert!(ours
            .attach_targets(&[(KIND_FUNC, "no_such_function")])
            .is_none());
    }

    #[test]
    fn running_kernel_has_the_fields_netta_reads() {
        let Ok(btf) = Btf::from_sys_fs() else {
            eprintln!("no kernel BTF here");
            return;
        };
        assert!(btf.member_offset("tcp_sock", "bytes_received").is_some());
        assert!(btf.member_offset("tcp_sock", "bytes_acked").is_some());
        assert_eq!(btf.member_offset("sock_common", "skc_v6_daddr"), Some(56));
        // A record's namespace, and what the process records read.
        assert!(btf.member_offset("sock_common", "skc_net").is_some());
        assert!(btf.member_offset("net", "ns").is_some());
        assert!(btf.member_offset("ns_common", "inum").is_some());
        assert!(btf.member_offset("task_struct", "start_boottime").is_some());
        assert!(btf.member_offset("mm_struct", "arg_start").is_some());
        assert_eq!(btf.func_params("udp_sendmsg"), Some(3));
        assert!(matches!(
            btf.func_params("inet_csk_accept"),
            Some(2) | Some(4)
        ));
        assert_eq!(btf.func_params("no_such_function_here"), None);
    }
}
