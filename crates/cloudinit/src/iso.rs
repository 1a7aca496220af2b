//! A small ISO 9660 writer for flat images of a few regular files (the `cidata` seed), with
//! the two extensions a Linux guest reads: Rock Ridge (RRIP 1.10 over SUSP 1.10) for POSIX
//! names and modes, and Joliet (UCS-2 names) for readers without Rock Ridge. The output is a
//! pure function of the inputs: timestamps come from the caller, nothing else varies.
//!
//! Layout, in 2048-byte sectors (ECMA-119 §6.2: the first 16 are the system area):
//!
//! | sector | what |
//! |---|---|
//! | 0–15 | system area, zero |
//! | 16 | primary volume descriptor (ECMA-119 §8.4) |
//! | 17 | supplementary volume descriptor: Joliet, UCS-2 level 3 |
//! | 18 | volume descriptor set terminator (§8.3) |
//! | 19, 20 | primary path table, L (little-endian) then M (big-endian) |
//! | 21, 22 | Joliet path table, L then M |
//! | 23 | primary root directory, with the Rock Ridge entries |
//! | 24 | SUSP continuation area: the `ER` entry, too long for the root's `.` record |
//! | 25 | Joliet root directory |
//! | 26… | file contents, each from a sector boundary, in the order given |
//!
//! Both directory trees point at the same file extents. A directory larger than one sector
//! (many files) takes as many as it needs; the layout above shifts accordingly.

use std::collections::BTreeSet;

/// ECMA-119 logical sector and block size.
pub const SECTOR: usize = 2048;

/// Longest file name accepted: Joliet's 64 UCS-2 characters, which also keeps every
/// directory record under the 255-byte limit with its Rock Ridge entries.
pub const MAX_NAME: usize = 64;

/// The latest time a directory record can hold (years since 1900 in one byte).
const MAX_YEAR: i64 = 2155;

/// First sector after the system area.
const PVD_SECTOR: u32 = 16;

/// Characters Joliet (§3.3) forbids in names; '/' would also break the Rock Ridge name.
const JOLIET_FORBIDDEN: &[u8] = b"*/:;?\\";

/// Modes in the Rock Ridge `PX` entries: what a tool writing files as root would give.
const FILE_MODE: u32 = 0o100_644;
const DIR_MODE: u32 = 0o040_755;

/// Why an image cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsoError {
    #[error("volume label {0:?}: 1 to 16 printable ASCII characters (the Joliet limit)")]
    InvalidLabel(String),
    #[error(
        "file name {0:?}: 1 to {MAX_NAME} printable ASCII characters, none of * / : ; ? \\, \
         not '.' or '..'"
    )]
    InvalidName(String),
    #[error("file name {0:?} given twice")]
    DuplicateName(String),
    #[error("file {name:?} is {len} bytes, more than an ISO 9660 extent holds")]
    FileTooLarge { name: String, len: usize },
    #[error("the image would be larger than 8 TiB (2^32 sectors)")]
    ImageTooLarge,
    #[error("timestamp {0} is past what ISO 9660 records (year {MAX_YEAR})")]
    TimestampOutOfRange(u64),
}

/// Builds the image of a flat volume labelled `label` holding `files` (name, contents) at
/// its root, every time stamped `mtime` (seconds since the Unix epoch, UTC).
pub fn build_iso(files: &[(&str, &[u8])], label: &str, mtime: u64) -> Result<Vec<u8>, IsoError> {
    check_label(label)?;
    let when = Timestamp::from_unix(mtime)?;
    let mut seen = BTreeSet::new();
    for (name, data) in files {
        check_name(name)?;
        if !seen.insert(*name) {
            return Err(IsoError::DuplicateName((*name).to_owned()));
        }
        if u32::try_from(data.len()).is_err() {
            return Err(IsoError::FileTooLarge {
                name: (*name).to_owned(),
                len: data.len(),
            });
        }
    }
    let primary_names = primary_identifiers(files);

    // Pass 1: directory sizes do not depend on where anything lies, so the layout can be
    // fixed before any record is written.
    let placeholder = Layout::placeholder(files.len());
    let primary_len = pack(&primary_dir(files, &primary_names, &placeholder, &when)).len();
    let joliet_len = pack(&joliet_dir(files, &placeholder, &when)).len();
    let layout = Layout::new(files, primary_len, joliet_len).ok_or(IsoError::ImageTooLarge)?;

    // Pass 2: the image.
    let mut img = vec![0u8; layout.total_sectors as usize * SECTOR];
    let primary = pack(&primary_dir(files, &primary_names, &layout, &when));
    let joliet = pack(&joliet_dir(files, &layout, &when));
    let root_primary = dir_record(
        &Record::dir(layout.primary_root, primary.len(), &[0]),
        &when,
    );
    let root_joliet = dir_record(&Record::dir(layout.joliet_root, joliet.len(), &[0]), &when);

    put(
        &mut img,
        PVD_SECTOR,
        &volume_descriptor(Kind::Primary, label, &layout, &root_primary, &when),
    );
    put(
        &mut img,
        PVD_SECTOR + 1,
        &volume_descriptor(Kind::Joliet, label, &layout, &root_joliet, &when),
    );
    put(&mut img, PVD_SECTOR + 2, &terminator());
    put(
        &mut img,
        layout.primary_path_l,
        &path_table(layout.primary_root, Endian::Little),
    );
    put(
        &mut img,
        layout.primary_path_m,
        &path_table(layout.primary_root, Endian::Big),
    );
    put(
        &mut img,
        layout.joliet_path_l,
        &path_table(layout.joliet_root, Endian::Little),
    );
    put(
        &mut img,
        layout.joliet_path_m,
        &path_table(layout.joliet_root, Endian::Big),
    );
    put(&mut img, layout.primary_root, &primary);
    put(&mut img, layout.continuation, &er_entry());
    put(&mut img, layout.joliet_root, &joliet);
    for ((_, data), &at) in files.iter().zip(&layout.files) {
        put(&mut img, at, data);
    }
    Ok(img)
}

fn check_label(label: &str) -> Result<(), IsoError> {
    let ok = !label.is_empty() && label.len() <= 16 && label.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(())
        .ok_or_else(|| IsoError::InvalidLabel(label.to_owned()))
}

fn check_name(name: &str) -> Result<(), IsoError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| (b.is_ascii_graphic() || b == b' ') && !JOLIET_FORBIDDEN.contains(&b));
    ok.then_some(())
        .ok_or_else(|| IsoError::InvalidName(name.to_owned()))
}

/// Where everything lies, in sectors.
#[derive(Debug, Default)]
struct Layout {
    primary_path_l: u32,
    primary_path_m: u32,
    joliet_path_l: u32,
    joliet_path_m: u32,
    primary_root: u32,
    continuation: u32,
    joliet_root: u32,
    /// Sizes of the two root directories, in bytes (whole sectors).
    primary_size: usize,
    joliet_size: usize,
    /// First sector of each file, in input order; 0 for an empty file (it has no extent).
    files: Vec<u32>,
    total_sectors: u32,
}

impl Layout {
    /// Zero locations for `n` files: the records it yields have their final sizes.
    fn placeholder(n: usize) -> Self {
        Self {
            files: vec![0; n],
            ..Self::default()
        }
    }

    /// `None` when the image would not fit in 32-bit sector numbers.
    fn new(files: &[(&str, &[u8])], primary_len: usize, joliet_len: usize) -> Option<Self> {
        let sectors = |len: usize| len.div_ceil(SECTOR) as u32;
        let primary_root = PVD_SECTOR + 7;
        let continuation = primary_root + sectors(primary_len);
        let joliet_root = continuation + 1;
        let mut next = joliet_root + sectors(joliet_len);
        let files = files
            .iter()
            .map(|(_, data)| {
                if data.is_empty() {
                    return Some(0);
                }
                let at = next;
                next = next.checked_add(sectors(data.len()))?;
                Some(at)
            })
            .collect::<Option<_>>()?;
        Some(Self {
            primary_path_l: PVD_SECTOR + 3,
            primary_path_m: PVD_SECTOR + 4,
            joliet_path_l: PVD_SECTOR + 5,
            joliet_path_m: PVD_SECTOR + 6,
            primary_root,
            continuation,
            joliet_root,
            primary_size: primary_len.div_ceil(SECTOR) * SECTOR,
            joliet_size: joliet_len.div_ceil(SECTOR) * SECTOR,
            files,
            total_sectors: next,
        })
    }
}

fn put(img: &mut [u8], sector: u32, bytes: &[u8]) {
    let at = sector as usize * SECTOR;
    img[at..at + bytes.len()].copy_from_slice(bytes);
}

// ---------------------------------------------------------------------------------------
// Names

/// ISO 9660 level-1 identifiers (`NAME8.EXT;1`, d-characters only: `A-Z 0-9 _`) for the
/// primary tree, unique within the directory. Rock Ridge `NM` and Joliet carry the real
/// names; these are what a reader with neither sees.
fn primary_identifiers(files: &[(&str, &[u8])]) -> Vec<String> {
    let d_chars = |s: &str, max: usize| -> String {
        s.chars()
            .map(|c| match c.to_ascii_uppercase() {
                c @ ('A'..='Z' | '0'..='9') => c,
                _ => '_',
            })
            .take(max)
            .collect()
    };
    let mut taken = BTreeSet::new();
    files
        .iter()
        .map(|(name, _)| {
            let (base, ext) = match name.rsplit_once('.') {
                Some((b, e)) if !b.is_empty() => (b, e),
                _ => (*name, ""),
            };
            let (base, ext) = (d_chars(base, 8), d_chars(ext, 3));
            let mut candidate = format!("{base}.{ext};1");
            let mut n = 1u32;
            // A clash (same first 8 characters) ends the base in a counter instead.
            while !taken.insert(candidate.clone()) {
                let digits = n.to_string();
                let keep = base.len().min(8 - digits.len().min(8));
                candidate = format!("{}{digits}.{ext};1", &base[..keep]);
                n += 1;
            }
            candidate
        })
        .collect()
}

fn ucs2_be(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

// ---------------------------------------------------------------------------------------
// Directories (ECMA-119 §9.1)

/// One directory record before encoding.
struct Record {
    extent: u32,
    size: u32,
    dir: bool,
    ident: Vec<u8>,
    /// The System Use field: SUSP/Rock Ridge entries (primary tree only).
    system_use: Vec<u8>,
}

impl Record {
    fn dir(extent: u32, size: usize, ident: &[u8]) -> Self {
        Self {
            extent,
            size: size as u32,
            dir: true,
            ident: ident.to_vec(),
            system_use: Vec::new(),
        }
    }
}

/// The primary root: `.` (which starts the SUSP area: `SP`, and `CE` pointing at the `ER`),
/// `..`, then the files sorted by identifier (ECMA-119 §9.3).
fn primary_dir(
    files: &[(&str, &[u8])],
    names: &[String],
    layout: &Layout,
    when: &Timestamp,
) -> Vec<Vec<u8>> {
    // The directory's own size is in its `.`/`..` records; pass 1 measures the directory
    // with a placeholder of the same width.
    let dir_size = layout.primary_size;
    let mut dot = Record::dir(layout.primary_root, dir_size, &[0]);
    dot.system_use = [
        sp_entry(),
        rr_entry(RR_PX),
        px_entry(DIR_MODE, 2),
        ce_entry(layout.continuation, ER_LEN),
    ]
    .concat();
    let mut dotdot = Record::dir(layout.primary_root, dir_size, &[1]);
    dotdot.system_use = [rr_entry(RR_PX), px_entry(DIR_MODE, 2)].concat();

    let mut entries: Vec<(String, Record)> = files
        .iter()
        .zip(names)
        .zip(&layout.files)
        .map(|(((name, data), ident), &extent)| {
            let record = Record {
                extent,
                size: data.len() as u32,
                dir: false,
                ident: ident.as_bytes().to_vec(),
                system_use: [
                    rr_entry(RR_PX | RR_NM),
                    px_entry(FILE_MODE, 1),
                    nm_entry(name),
                ]
                .concat(),
            };
            (ident.clone(), record)
        })
        .collect();
    // §9.3: by name, then extension, each padded with spaces; '.' sorts below every
    // d-character, so splitting at it and comparing the parts gives that order.
    entries.sort_by(|(a, _), (b, _)| a.split_once('.').cmp(&b.split_once('.')));
    [dot, dotdot]
        .into_iter()
        .chain(entries.into_iter().map(|(_, r)| r))
        .map(|r| dir_record(&r, when))
        .collect()
}

/// The Joliet root: the same files under their UCS-2 names, sorted by those (Joliet §3.3),
/// without a version suffix (Linux and isoinfo show the name as is).
fn joliet_dir(files: &[(&str, &[u8])], layout: &Layout, when: &Timestamp) -> Vec<Vec<u8>> {
    let dir_size = layout.joliet_size;
    let mut entries: Vec<Record> = files
        .iter()
        .zip(&layout.files)
        .map(|((name, data), &extent)| Record {
            extent,
            size: data.len() as u32,
            dir: false,
            ident: ucs2_be(name),
            system_use: Vec::new(),
        })
        .collect();
    entries.sort_by(|a, b| a.ident.cmp(&b.ident));
    [
        Record::dir(layout.joliet_root, dir_size, &[0]),
        Record::dir(layout.joliet_root, dir_size, &[1]),
    ]
    .into_iter()
    .chain(entries)
    .map(|r| dir_record(&r, when))
    .collect()
}

/// ECMA-119 §9.1: one directory record. Multi-byte numbers are "both-endian" (§7.2.3,
/// §7.3.3): little-endian then big-endian copies of the same value.
fn dir_record(r: &Record, when: &Timestamp) -> Vec<u8> {
    let mut rec = vec![0u8; 33];
    rec[2..10].copy_from_slice(&both32(r.extent));
    rec[10..18].copy_from_slice(&both32(r.size));
    rec[18..25].copy_from_slice(&when.dir_record());
    rec[25] = if r.dir { 0x02 } else { 0x00 }; // file flags: bit 1 = directory
    rec[28..32].copy_from_slice(&both16(1)); // volume sequence number
    rec[32] = r.ident.len() as u8;
    rec.extend_from_slice(&r.ident);
    if r.ident.len().is_multiple_of(2) {
        rec.push(0); // §9.1.12 padding: the System Use field starts at an even offset
    }
    rec.extend_from_slice(&r.system_use);
    if !rec.len().is_multiple_of(2) {
        rec.push(0); // records have even length
    }
    rec[0] = rec.len() as u8;
    rec
}

/// Lays records out in whole sectors; a record never crosses a sector boundary (§6.8.1.1).
fn pack(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::new();
    for rec in records {
        let used = out.len() % SECTOR;
        if used + rec.len() > SECTOR {
            out.resize(out.len() + SECTOR - used, 0);
        }
        out.extend_from_slice(rec);
    }
    out.resize(out.len().div_ceil(SECTOR).max(1) * SECTOR, 0);
    out
}

/// ECMA-119 §9.4: a path table with the root alone (10 bytes: identifier length 1, no
/// extended attributes, its extent, parent directory number 1 = itself, identifier 0x00,
/// one pad byte). L tables are little-endian, M tables big-endian.
fn path_table(root: u32, endian: Endian) -> Vec<u8> {
    let mut t = vec![1u8, 0];
    match endian {
        Endian::Little => {
            t.extend_from_slice(&root.to_le_bytes());
            t.extend_from_slice(&1u16.to_le_bytes());
        }
        Endian::Big => {
            t.extend_from_slice(&root.to_be_bytes());
            t.extend_from_slice(&1u16.to_be_bytes());
        }
    }
    t.extend_from_slice(&[0, 0]);
    t
}

const PATH_TABLE_LEN: u32 = 10;

#[derive(Clone, Copy)]
enum Endian {
    Little,
    Big,
}

// ---------------------------------------------------------------------------------------
// SUSP 1.10 and RRIP 1.10 entries: signature (2 bytes), length, version 1, data.

/// `SP` (SUSP §5.3): marks the use of SUSP; first entry of the root's `.` record. Check
/// bytes 0xBE 0xEF; no bytes skipped before entries in later records.
fn sp_entry() -> Vec<u8> {
    vec![b'S', b'P', 7, 1, 0xBE, 0xEF, 0]
}

/// `RR` (RRIP 1.09, still written by mkisofs and read by Linux): which Rock Ridge entries
/// this record holds. Linux stops reading a record whose `RR` names none of PX, TF, SL, CL.
fn rr_entry(flags: u8) -> Vec<u8> {
    vec![b'R', b'R', 5, 1, flags]
}

/// `RR` flag bits (RRIP 1.09 §4.1.1).
const RR_PX: u8 = 1 << 0;
const RR_NM: u8 = 1 << 3;

/// `PX` (RRIP §4.1.1, the 1.10 form without a serial number): mode, links, uid 0, gid 0.
fn px_entry(mode: u32, links: u32) -> Vec<u8> {
    let mut e = vec![b'P', b'X', 36, 1];
    e.extend_from_slice(&both32(mode));
    e.extend_from_slice(&both32(links));
    e.extend_from_slice(&both32(0));
    e.extend_from_slice(&both32(0));
    e
}

/// `NM` (RRIP §4.1.4): the POSIX name, flags 0 (complete, not `.`/`..`).
fn nm_entry(name: &str) -> Vec<u8> {
    let mut e = vec![b'N', b'M', 5 + name.len() as u8, 1, 0];
    e.extend_from_slice(name.as_bytes());
    e
}

/// `CE` (SUSP §5.1): the rest of this record's entries are at `sector`, offset 0.
fn ce_entry(sector: u32, len: usize) -> Vec<u8> {
    let mut e = vec![b'C', b'E', 28, 1];
    e.extend_from_slice(&both32(sector));
    e.extend_from_slice(&both32(0));
    e.extend_from_slice(&both32(len as u32));
    e
}

const ER_ID: &str = "RRIP_1991A";
const ER_DESCRIPTOR: &str =
    "THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
const ER_SOURCE: &str = "PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER \
                         IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.";
const ER_LEN: usize = 8 + ER_ID.len() + ER_DESCRIPTOR.len() + ER_SOURCE.len();

/// `ER` (SUSP §5.5, contents from RRIP 1.10 §4.3): names the extension in use. Linux turns
/// Rock Ridge on (and prefers it to Joliet) when it meets this entry in the root's `.`.
fn er_entry() -> Vec<u8> {
    let mut e = vec![
        b'E',
        b'R',
        ER_LEN as u8,
        1,
        ER_ID.len() as u8,
        ER_DESCRIPTOR.len() as u8,
        ER_SOURCE.len() as u8,
        1, // extension version
    ];
    e.extend_from_slice(ER_ID.as_bytes());
    e.extend_from_slice(ER_DESCRIPTOR.as_bytes());
    e.extend_from_slice(ER_SOURCE.as_bytes());
    e
}

// ---------------------------------------------------------------------------------------
// Volume descriptors (ECMA-119 §8; Joliet specification for the supplementary one)

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Primary,
    Joliet,
}

fn volume_descriptor(
    kind: Kind,
    label: &str,
    layout: &Layout,
    root: &[u8],
    when: &Timestamp,
) -> Vec<u8> {
    let joliet = kind == Kind::Joliet;
    let mut d = vec![0u8; SECTOR];
    d[0] = if joliet { 2 } else { 1 }; // volume descriptor type
    d[1..6].copy_from_slice(b"CD001"); // standard identifier
    d[6] = 1; // version
    text(&mut d[8..40], "LINUX", joliet); // system identifier
                                          // Volume identifier: the label as given; the lowercase `cidata` is not a d-character
                                          // string, but it is what genisoimage/xorriso write and what blkid and cloud-init match.
    text(&mut d[40..72], label, joliet);
    d[80..88].copy_from_slice(&both32(layout.total_sectors)); // volume space size
    if joliet {
        d[88..91].copy_from_slice(b"%/E"); // escape sequence: UCS-2 level 3
    }
    d[120..124].copy_from_slice(&both16(1)); // volume set size
    d[124..128].copy_from_slice(&both16(1)); // volume sequence number
    d[128..132].copy_from_slice(&both16(SECTOR as u16)); // logical block size
    d[132..140].copy_from_slice(&both32(PATH_TABLE_LEN));
    let (l, m) = if joliet {
        (layout.joliet_path_l, layout.joliet_path_m)
    } else {
        (layout.primary_path_l, layout.primary_path_m)
    };
    d[140..144].copy_from_slice(&l.to_le_bytes()); // type L path table
    d[148..152].copy_from_slice(&m.to_be_bytes()); // type M path table
    d[156..156 + root.len()].copy_from_slice(root); // root directory record (34 bytes)
    text(&mut d[190..318], "", joliet); // volume set identifier
    text(&mut d[318..446], "", joliet); // publisher
    text(&mut d[446..574], "", joliet); // data preparer
    text(&mut d[574..702], "OXIVIRT", joliet); // application
    text(&mut d[702..739], "", joliet); // copyright file
    text(&mut d[739..776], "", joliet); // abstract file
    text(&mut d[776..813], "", joliet); // bibliographic file
    d[813..830].copy_from_slice(&when.descriptor()); // creation
    d[830..847].copy_from_slice(&when.descriptor()); // modification
    d[847..864].copy_from_slice(&Timestamp::UNSET); // expiration
    d[864..881].copy_from_slice(&Timestamp::UNSET); // effective
    d[881] = 1; // file structure version
    d
}

fn terminator() -> Vec<u8> {
    let mut d = vec![0u8; SECTOR];
    d[0] = 255;
    d[1..6].copy_from_slice(b"CD001");
    d[6] = 1;
    d
}

/// A text field padded with spaces: single bytes in the primary descriptor, UCS-2
/// big-endian in Joliet's (an odd final byte stays zero).
fn text(field: &mut [u8], s: &str, joliet: bool) {
    if joliet {
        let mut units = s.encode_utf16().chain(std::iter::repeat(u16::from(b' ')));
        for pair in field.chunks_exact_mut(2) {
            let u = units.next().unwrap_or(0x20);
            pair.copy_from_slice(&u.to_be_bytes());
        }
    } else {
        let mut bytes = s.bytes().chain(std::iter::repeat(b' '));
        for b in field.iter_mut() {
            *b = bytes.next().unwrap_or(b' ');
        }
    }
}

fn both16(v: u16) -> [u8; 4] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], b[0], b[1]]
}

fn both32(v: u32) -> [u8; 8] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], l[2], l[3], b[0], b[1], b[2], b[3]]
}

// ---------------------------------------------------------------------------------------
// Time

/// A UTC time broken down into calendar fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Timestamp {
    year: i64,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

impl Timestamp {
    /// §8.4.26.1: "not specified" is sixteen '0' digits and a zero offset.
    const UNSET: [u8; 17] = *b"0000000000000000\0";

    fn from_unix(secs: u64) -> Result<Self, IsoError> {
        let days = i64::try_from(secs / 86_400).map_err(|_| IsoError::TimestampOutOfRange(secs))?;
        let rem = secs % 86_400;
        let (year, month, day) = oxivirt_api::time::civil_from_days(days);
        let (month, day) = (month as u8, day as u8);
        if year > MAX_YEAR {
            return Err(IsoError::TimestampOutOfRange(secs));
        }
        Ok(Self {
            year,
            month,
            day,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
        })
    }

    /// §9.1.5: years since 1900, month, day, hour, minute, second, GMT offset (15 min units).
    fn dir_record(&self) -> [u8; 7] {
        [
            (self.year - 1900) as u8,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            0,
        ]
    }

    /// §8.4.26.1: "YYYYMMDDHHMMSScc" in digits, then the GMT offset.
    fn descriptor(&self) -> [u8; 17] {
        let s = format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}00",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        );
        let mut out = [0u8; 17];
        out[..16].copy_from_slice(s.as_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_identifiers_are_level_1_and_unique() {
        let files: Vec<(&str, &[u8])> = vec![
            ("meta-data", b""),
            ("user-data", b""),
            ("network-config", b""),
            ("user-data.bak", b""),
            ("user-datb", b""),
            ("noext", b""),
            (".hidden", b""),
        ];
        assert_eq!(
            primary_identifiers(&files),
            [
                "META_DAT.;1",
                "USER_DAT.;1",
                "NETWORK_.;1",
                "USER_DAT.BAK;1",
                "USER_DA1.;1",
                "NOEXT.;1",
                "_HIDDEN.;1"
            ]
        );
    }

    #[test]
    fn timestamps_break_down_in_utc() {
        let t = Timestamp::from_unix(0).expect("epoch");
        assert_eq!(t.descriptor(), *b"1970010100000000\0");
        assert_eq!(t.dir_record(), [70, 1, 1, 0, 0, 0, 0]);
        // 2024-02-29 12:34:56 UTC, a leap day.
        let t = Timestamp::from_unix(1_709_210_096).expect("2024");
        assert_eq!(&t.descriptor()[..16], b"2024022912345600");
        assert_eq!(
            Timestamp::from_unix(u64::MAX),
            Err(IsoError::TimestampOutOfRange(u64::MAX))
        );
    }

    #[test]
    fn names_and_labels_are_checked() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a;1",
            "x:y",
            "tab\there",
            &"x".repeat(65),
        ] {
            assert_eq!(
                build_iso(&[(bad, b"")], "cidata", 0),
                Err(IsoError::InvalidName(bad.to_owned()))
            );
        }
        assert_eq!(
            build_iso(&[("a", b""), ("a", b"")], "cidata", 0),
            Err(IsoError::DuplicateName("a".into()))
        );
        for bad in ["", "seventeen-chars-x", "ci data"] {
            assert_eq!(
                build_iso(&[], bad, 0),
                Err(IsoError::InvalidLabel(bad.into()))
            );
        }
    }

    #[test]
    fn the_er_entry_is_the_rrip_1_10_one() {
        let er = er_entry();
        assert_eq!(er.len(), ER_LEN);
        assert_eq!(ER_LEN, 237);
    }

    #[test]
    fn many_files_spill_the_directory_into_more_sectors() {
        let names: Vec<String> = (0..40).map(|i| format!("file-number-{i:02}")).collect();
        let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
        let ids = primary_identifiers(&files);
        let records = primary_dir(
            &files,
            &ids,
            &Layout::placeholder(files.len()),
            &Timestamp::from_unix(0).expect("epoch"),
        );
        let packed = pack(&records);
        assert!(
            packed.len() > SECTOR,
            "40 records with Rock Ridge need more than a sector"
        );
        // No record crosses a sector boundary: each sector starts with a record or zeros.
        for sector in packed.chunks(SECTOR) {
            let mut at = 0;
            while at < SECTOR && sector[at] != 0 {
                at += usize::from(sector[at]);
            }
            assert!(at <= SECTOR);
        }
        let img = build_iso(&files, "cidata", 0).expect("image");
        let layout = Layout::new(
            &files,
            packed.len(),
            pack(&joliet_dir(
                &files,
                &Layout::placeholder(files.len()),
                &Timestamp::from_unix(0).expect("epoch"),
            ))
            .len(),
        )
        .expect("fits");
        assert_eq!(img.len(), layout.total_sectors as usize * SECTOR);
        assert_eq!(
            layout.continuation,
            layout.primary_root + (packed.len() / SECTOR) as u32
        );
    }
}
