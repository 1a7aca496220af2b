//! The volume's fields through KubeVirt's admission rules: one source of each kind, the
//! 2048-byte limits after decoding, Go's base64, KubeVirt's messages, and the meta-data.

use std::error::Error as _;
use std::os::unix::fs::PermissionsExt;

use oxivirt_cloudinit::{Error, MetaData, NoCloud, NoCloudSource, VmiIdentity, MAX_DATA_LEN};

fn vmi() -> VmiIdentity {
    VmiIdentity {
        name: "testvmi".into(),
        namespace: "default".into(),
        hostname: None,
        firmware_uuid: None,
    }
}

fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn user(raw: Option<&str>, encoded: Option<&str>) -> NoCloudSource {
    NoCloudSource {
        user_data: raw.map(str::to_owned),
        user_data_base64: encoded.map(str::to_owned),
        ..Default::default()
    }
}

fn network(raw: Option<&str>, encoded: Option<&str>) -> NoCloudSource {
    NoCloudSource {
        network_data: raw.map(str::to_owned),
        network_data_base64: encoded.map(str::to_owned),
        ..Default::default()
    }
}

fn refused(source: &NoCloudSource) -> Error {
    NoCloud::new(source, 1, &vmi()).expect_err("refused")
}

#[test]
fn user_data_up_to_exactly_2048_bytes_is_accepted_raw_or_encoded() {
    let at_limit = "x".repeat(MAX_DATA_LEN);
    let seed = NoCloud::new(&user(Some(&at_limit), None), 0, &vmi()).expect("2048 raw");
    assert_eq!(seed.user_data, at_limit.as_bytes());
    let seed = NoCloud::new(&user(None, Some(&b64(at_limit.as_bytes()))), 0, &vmi())
        .expect("2048 decoded");
    assert_eq!(seed.user_data, at_limit.as_bytes());
    assert_eq!(seed.network_data, None);
}

#[test]
fn user_data_of_2049_bytes_is_refused_with_kubevirts_message() {
    let over = "x".repeat(MAX_DATA_LEN + 1);
    for source in [
        user(Some(&over), None),
        user(None, Some(&b64(over.as_bytes()))),
    ] {
        let err = refused(&source);
        assert!(
            matches!(err, Error::UserDataTooLong { len: 2049, .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "spec.volumes[1].cloudInitNoCloud userdata exceeds 2048 byte limit. \
             Should use UserDataSecretRef for larger data."
        );
    }
}

#[test]
fn the_limit_counts_bytes_not_characters() {
    // 1024 two-byte characters are 2048 bytes; one more character is over.
    let ok = "é".repeat(1024);
    NoCloud::new(&user(Some(&ok), None), 0, &vmi()).expect("2048 bytes");
    let over = "é".repeat(1025);
    assert!(matches!(
        refused(&user(Some(&over), None)),
        Error::UserDataTooLong { len: 2050, .. }
    ));
}

#[test]
fn network_data_has_the_same_limit_and_its_own_message() {
    let at_limit = "n".repeat(MAX_DATA_LEN);
    let seed = NoCloud::new(&network(Some(&at_limit), None), 0, &vmi()).expect("2048");
    assert_eq!(seed.network_data.as_deref(), Some(at_limit.as_bytes()));
    // Only network data: user-data is there, empty, as KubeVirt writes it.
    assert_eq!(seed.user_data, b"");
    let over = "n".repeat(MAX_DATA_LEN + 1);
    for source in [
        network(Some(&over), None),
        network(None, Some(&b64(over.as_bytes()))),
    ] {
        let err = refused(&source);
        assert!(
            matches!(err, Error::NetworkDataTooLong { len: 2049, .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "spec.volumes[1].cloudInitNoCloud networkdata exceeds 2048 byte limit. \
             Should use NetworkDataSecretRef for larger data."
        );
    }
}

#[test]
fn both_forms_of_one_kind_are_refused() {
    let err = refused(&user(Some("#cloud-config"), Some(&b64(b"#cloud-config"))));
    assert!(matches!(err, Error::MultipleUserDataSources { .. }));
    assert_eq!(
        err.to_string(),
        "spec.volumes[1].cloudInitNoCloud must have only one userdatasource set."
    );
    let err = refused(&network(Some("version: 2"), Some(&b64(b"version: 2"))));
    assert!(matches!(err, Error::MultipleNetworkDataSources { .. }));
    assert_eq!(
        err.to_string(),
        "spec.volumes[1].cloudInitNoCloud must have only one networkdata source set."
    );
}

#[test]
fn no_data_at_all_is_refused_and_empty_strings_count_as_unset() {
    for source in [
        NoCloudSource::default(),
        NoCloudSource {
            user_data: Some(String::new()),
            user_data_base64: Some(String::new()),
            network_data: Some(String::new()),
            network_data_base64: Some(String::new()),
        },
    ] {
        let err = refused(&source);
        assert!(matches!(err, Error::NoDataSource { .. }));
        assert_eq!(
            err.to_string(),
            "spec.volumes[1].cloudInitNoCloud must have at least one userdatasource or one \
             networkdatasource set."
        );
    }
}

#[test]
fn bad_base64_is_refused_with_kubevirts_message_and_the_decoder_error_as_source() {
    let err = refused(&user(None, Some("not base64!")));
    assert!(matches!(err, Error::InvalidBase64 { .. }), "{err:?}");
    // KubeVirt's admitter names the field, then repeats source type and field.
    assert_eq!(
        err.to_string(),
        "spec.volumes[1].cloudInitNoCloud.userDataBase64.cloudInitNoCloud.userDataBase64 \
         is not a valid base64 value."
    );
    let source = err.source().expect("a source");
    assert!(source.downcast_ref::<base64::DecodeError>().is_some());

    let err = refused(&network(None, Some("%%%%")));
    assert_eq!(
        err.to_string(),
        "spec.volumes[1].cloudInitNoCloud.networkDataBase64.cloudInitNoCloud.networkDataBase64 \
         is not a valid base64 value."
    );
}

#[test]
fn base64_is_decoded_as_gos_std_encoding() {
    let decode = |s: &str| NoCloud::new(&user(None, Some(s)), 0, &vmi()).map(|n| n.user_data);
    // Line breaks are skipped (Go's decoder ignores \r and \n).
    assert_eq!(
        decode("I2Nsb3Vk\nLWNvbmZp\r\nZwo=").expect("wrapped"),
        b"#cloud-config\n"
    );
    // Padding is required.
    assert!(decode("YQ").is_err());
    assert_eq!(decode("YQ==").expect("padded"), b"a");
    // Non-zero bits after the last symbol are tolerated, as in Go's non-strict mode.
    assert_eq!(decode("YR==").expect("trailing bits"), b"a");
    // Binary data (gzip user-data, say) goes through untouched.
    assert_eq!(
        decode(&b64(&[0x1f, 0x8b, 0, 0xff])).expect("binary"),
        [0x1f, 0x8b, 0, 0xff]
    );
}

#[test]
fn the_first_problem_in_the_admitters_order_wins() {
    // A bad user base64 comes before an oversized network data.
    let source = NoCloudSource {
        user_data_base64: Some("!".into()),
        network_data: Some("n".repeat(5000)),
        ..Default::default()
    };
    assert!(matches!(refused(&source), Error::InvalidBase64 { .. }));
}

#[test]
fn meta_data_is_kubevirts_json() {
    let seed = NoCloud::new(&user(Some("#cloud-config\n"), None), 0, &vmi()).expect("valid");
    assert_eq!(
        seed.meta_data,
        br#"{"instance-id":"testvmi.default","local-hostname":"testvmi"}"#
    );
    let with_all = VmiIdentity {
        hostname: Some("myhost".into()),
        firmware_uuid: Some("5d307ca9-b3ef-428c-8861-06e72d69f223".into()),
        ..vmi()
    };
    assert_eq!(
        MetaData::for_vmi(&with_all).to_bytes(),
        br#"{"instance-id":"5d307ca9-b3ef-428c-8861-06e72d69f223","local-hostname":"myhost"}"#
    );
}

#[test]
fn the_hostname_is_the_name_up_to_its_first_dot_and_at_most_63_bytes() {
    let named = |name: &str| {
        MetaData::for_vmi(&VmiIdentity {
            name: name.into(),
            ..vmi()
        })
        .local_hostname
    };
    assert_eq!(named("web.example"), "web");
    assert_eq!(named(&"a".repeat(70)), "a".repeat(63));
    let empty_hostname = VmiIdentity {
        hostname: Some(String::new()),
        ..vmi()
    };
    assert_eq!(MetaData::for_vmi(&empty_hostname).local_hostname, "testvmi");
}

#[test]
fn the_source_reads_kubevirts_field_names() {
    let json = r##"{"userData": "#cloud-config\n", "networkDataBase64": "dmVyc2lvbjogMgo="}"##;
    let source: NoCloudSource = serde_json::from_str(json).expect("parses");
    let seed = NoCloud::new(&source, 0, &vmi()).expect("valid");
    assert_eq!(seed.user_data, b"#cloud-config\n");
    assert_eq!(seed.network_data.as_deref(), Some(&b"version: 2\n"[..]));
    let names: Vec<&str> = seed.files().iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["meta-data", "user-data", "network-config"]);
}

#[test]
fn the_image_replaces_an_old_one_atomically_with_mode_0644() {
    let dir = oxivirt_testkit::cleanup::TempDir::new("ci-w").expect("temp dir");
    let old = dir.path().join(oxivirt_cloudinit::ISO_FILE_NAME);
    std::fs::write(&old, b"old").expect("old file");
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let seed = NoCloud::new(&user(Some("#cloud-config\n"), None), 0, &vmi()).expect("valid");
    let path = seed.write_iso(dir.path(), 0).expect("written");
    assert_eq!(path, old);
    assert_eq!(
        std::fs::read(&path).expect("read"),
        seed.to_iso(0).expect("image")
    );
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        left,
        [std::ffi::OsString::from("noCloud.iso")],
        "no temporary file left"
    );

    let missing = dir.path().join("missing");
    let err = seed.write_iso(&missing, 0).expect_err("no such directory");
    assert!(matches!(&err, Error::Write { path, .. } if path == &missing.join("noCloud.iso")));
    assert!(err.source().is_some());
}
