//! The image byte for byte: a golden sha256 of a small seed (so any change to the layout
//! shows up in review), its directory records decoded independently of the writer, and
//! determinism.

use oxivirt_cloudinit::{build_iso, NoCloud, NoCloudSource, VmiIdentity};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

const SECTOR: usize = 2048;

fn seed() -> NoCloud {
    let source = NoCloudSource {
        user_data: Some("#cloud-config\npassword: gocubsgo\n".into()),
        network_data: Some("version: 2\n".into()),
        ..Default::default()
    };
    let vmi = VmiIdentity {
        name: "testvmi".into(),
        namespace: "default".into(),
        hostname: None,
        firmware_uuid: None,
    };
    NoCloud::new(&source, 0, &vmi).expect("valid")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn u32_both(b: &[u8]) -> u32 {
    let le = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let be = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    assert_eq!(le, be, "both-endian fields agree");
    le
}

/// The records of the directory at `sector`, one line each: extent, size, flags, name
/// (UCS-2 decoded for Joliet), and the SUSP entries with their lengths.
fn records(img: &[u8], sector: usize, joliet: bool) -> String {
    let dir = &img[sector * SECTOR..(sector + 1) * SECTOR];
    let mut out = String::new();
    let mut at = 0;
    while at < SECTOR && dir[at] != 0 {
        let rec = &dir[at..at + usize::from(dir[at])];
        let name_len = usize::from(rec[32]);
        let ident = &rec[33..33 + name_len];
        let name = match ident {
            [0] => ".".to_owned(),
            [1] => "..".to_owned(),
            _ if joliet => String::from_utf16_lossy(
                &ident
                    .chunks(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect::<Vec<_>>(),
            ),
            _ => String::from_utf8_lossy(ident).into_owned(),
        };
        let _ = write!(
            out,
            "{name:<16} extent {:>3} size {:>5} flags {:02x} date {:?}",
            u32_both(&rec[2..10]),
            u32_both(&rec[10..18]),
            rec[25],
            &rec[18..25],
        );
        let mut su = 33 + name_len + (1 - name_len % 2);
        while su + 4 <= rec.len() {
            let len = usize::from(rec[su + 2]);
            let sig = String::from_utf8_lossy(&rec[su..su + 2]);
            let _ = write!(out, " {sig}({len})");
            if sig == "NM" {
                let _ = write!(out, "={}", String::from_utf8_lossy(&rec[su + 5..su + len]));
            }
            if sig == "RR" {
                let _ = write!(out, "={:#04x}", rec[su + 4]);
            }
            if sig == "PX" {
                let _ = write!(out, "={:o}", u32_both(&rec[su + 4..su + 12]));
            }
            su += len.max(1);
        }
        out.push('\n');
        at += rec.len();
    }
    out
}

#[test]
fn the_seed_image_is_golden() {
    let img = seed().to_iso(0).expect("image");
    assert_eq!(img.len(), 29 * SECTOR);
    insta::assert_snapshot!("seed_sha256", hex(&Sha256::digest(&img)));
    insta::assert_snapshot!("primary_root", records(&img, 23, false));
    insta::assert_snapshot!("joliet_root", records(&img, 25, true));
    // Sector 24 is the continuation area the root's CE points at: the ER entry.
    let er = &img[24 * SECTOR..24 * SECTOR + 237];
    assert_eq!(&er[..4], b"ER\xed\x01");
    assert_eq!(&er[8..18], b"RRIP_1991A");
}

#[test]
fn the_volume_descriptors_say_what_isoinfo_reads() {
    let img = seed().to_iso(1_700_000_000).expect("image");
    let pvd = &img[16 * SECTOR..17 * SECTOR];
    assert_eq!(&pvd[..7], b"\x01CD001\x01");
    assert_eq!(&pvd[40..72], format!("{:<32}", "cidata").as_bytes());
    assert_eq!(u32_both(&pvd[80..88]), 29);
    assert_eq!(&pvd[813..830], b"2023111422132000\0");
    let svd = &img[17 * SECTOR..18 * SECTOR];
    assert_eq!(&svd[..7], b"\x02CD001\x01");
    assert_eq!(&svd[88..91], b"%/E");
    assert_eq!(&svd[40..52], b"\0c\0i\0d\0a\0t\0a");
    assert_eq!(&img[18 * SECTOR..18 * SECTOR + 7], b"\xffCD001\x01");
    // Nothing before the descriptors.
    assert!(img[..16 * SECTOR].iter().all(|&b| b == 0));
}

#[test]
fn the_same_inputs_give_the_same_bytes_and_only_time_changes_with_time() {
    let a = seed().to_iso(0).expect("image");
    assert_eq!(a, seed().to_iso(0).expect("image"));
    let b = seed().to_iso(86_400).expect("image");
    assert_ne!(a, b);
    let differing: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
    // Only the day digit of the descriptors' dates and the day byte of each record.
    for i in differing {
        let (sector, offset) = (i / SECTOR, i % SECTOR);
        let in_descriptor_dates = (16..=17).contains(&sector) && (813..847).contains(&offset);
        let in_records = sector == 23 || sector == 25 || (16..=17).contains(&sector);
        assert!(in_descriptor_dates || in_records, "byte {i} changed");
    }
}

#[test]
fn an_empty_file_takes_no_sector() {
    let img = build_iso(&[("user-data", b""), ("meta-data", b"{}")], "cidata", 0).expect("image");
    assert_eq!(img.len(), 27 * SECTOR);
    let dir = records(&img, 23, false);
    assert!(
        dir.contains("USER_DAT.;1      extent   0 size     0"),
        "{dir}"
    );
}
