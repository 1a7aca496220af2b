//! The seed's VirtualMachine (`tests/fixtures/vm-2.yaml`) parses, gets KubeVirt's defaults and
//! validates; refused specs name their field with KubeVirt's message.

use oxivirt_api::defaults::{guest_memory_bytes, set_defaults, vcpus};
use oxivirt_api::validate::{validate_vm, validate_vmi};
use oxivirt_api::{
    parse_instance, parse_vm, parse_vmi, Binding, Error, ValidationError, VirtualMachineInstance,
};

const SEED: &str = include_str!("fixtures/vm-2.yaml");

fn seed_vmi() -> VirtualMachineInstance {
    let mut vmi = parse_instance("vm-2.yaml", SEED).expect("seed parses");
    set_defaults(&mut vmi.spec);
    vmi
}

#[test]
fn seed_vm_parses_as_written() {
    let vm = parse_vm("vm-2.yaml", SEED).expect("seed parses");
    assert_eq!(vm.metadata.name.as_deref(), Some("testvm-2"));
    assert_eq!(vm.spec.running, Some(false));
    assert!(vm.spec.run_strategy.is_none());
    let t = &vm.spec.template;
    assert_eq!(
        t.metadata
            .labels
            .get("kubevirt.io/domain")
            .map(String::as_str),
        Some("testvm-2")
    );
    let spec = &t.spec;
    let mem = spec
        .domain
        .resources
        .requests
        .memory
        .as_ref()
        .expect("memory request");
    assert_eq!(mem.as_str(), "64M");
    assert_eq!(mem.value(), Some(64_000_000));
    // `default:` with no value is null: not a default network.
    let multus = spec.networks[1].multus.as_ref().expect("multus");
    assert_eq!(multus.network_name, "multus-br");
    assert_eq!(multus.default, None);
    assert!(!multus.is_default());
    let ci = spec.volumes[1]
        .cloud_init_no_cloud
        .as_ref()
        .expect("cloud-init");
    assert_eq!(ci.user_data_base64.as_deref(), Some("SGkuXG4="));
    validate_vm(&vm).expect("seed VM is valid");
}

#[test]
fn seed_template_becomes_a_valid_vmi_with_kubevirts_defaults() {
    let vmi = seed_vmi();
    assert_eq!(vmi.kind, "VirtualMachineInstance");
    assert_eq!(vmi.metadata.name.as_deref(), Some("testvm-2"));
    validate_vmi(&vmi).expect("defaulted seed VMI is valid");

    let d = &vmi.spec.domain.devices;
    let ifaces: Vec<_> = d
        .interfaces
        .iter()
        .map(|i| (i.name.as_str(), i.binding(), i.model.as_deref()))
        .collect();
    assert_eq!(
        ifaces,
        [
            ("default", Some(Binding::Masquerade), Some("virtio")),
            ("ext-net", Some(Binding::Bridge), Some("virtio")),
        ]
    );
    let nets = &vmi.spec.networks;
    assert_eq!(nets[0].name, "default");
    assert!(nets[0].pod.is_some());
    assert_eq!(nets[1].name, "ext-net");
    assert_eq!(
        nets[1].multus.as_ref().map(|m| m.network_name.as_str()),
        Some("multus-br")
    );
    let cd = vmi.spec.volumes[0]
        .container_disk
        .as_ref()
        .expect("containerDisk");
    assert_eq!(cd.image, "quay.io/kubevirt/cirros-container-disk-demo");
    assert!(d
        .disks
        .iter()
        .all(|x| x.disk.as_ref().and_then(|t| t.bus.as_deref()) == Some("virtio")));
    assert_eq!(guest_memory_bytes(&vmi.spec), Some(64_000_000));
    assert_eq!(vcpus(&vmi.spec), 1);
    assert_eq!(vmi.spec.termination_grace_period_seconds, Some(180));
}

#[test]
fn seed_defaults_snapshot() {
    insta::assert_json_snapshot!("seed_defaulted_vmi", seed_vmi());
}

#[test]
fn defaults_are_idempotent() {
    let once = seed_vmi();
    let mut twice = once.clone();
    set_defaults(&mut twice.spec);
    assert_eq!(once, twice);
}

#[test]
fn json_round_trip_keeps_everything() {
    let vmi = seed_vmi();
    let json = serde_json::to_string_pretty(&vmi).expect("serialize");
    let back = parse_vmi("vmi.json", &json).expect("JSON parses");
    assert_eq!(vmi, back);
}

#[test]
fn empty_spec_gets_the_pod_network_by_masquerade() {
    let text = "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {name: a}\nspec:\n  domain:\n    memory: {guest: 64Mi}\n";
    let mut vmi = parse_vmi("a.yaml", text).expect("parses");
    set_defaults(&mut vmi.spec);
    let d = &vmi.spec.domain.devices;
    assert_eq!(d.interfaces.len(), 1);
    assert_eq!(d.interfaces[0].name, "default");
    assert_eq!(d.interfaces[0].binding(), Some(Binding::Masquerade));
    assert!(vmi.spec.networks[0].pod.is_some());
    assert_eq!(guest_memory_bytes(&vmi.spec), Some(67_108_864));
    validate_vmi(&vmi).expect("valid");

    let no_pod = text.replace(
        "memory: {guest: 64Mi}",
        "memory: {guest: 64Mi}\n    devices: {autoattachPodInterface: false}",
    );
    let mut vmi = parse_vmi("a.yaml", &no_pod).expect("parses");
    set_defaults(&mut vmi.spec);
    assert!(vmi.spec.domain.devices.interfaces.is_empty());
    assert!(vmi.spec.networks.is_empty());
}

#[test]
fn parse_errors_say_where() {
    let broken =
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nspec:\n  template:\n    spec: [\n";
    let e = parse_vm("bad.yaml", broken).expect_err("must fail");
    let Error::Yaml { line, .. } = &e else {
        panic!("not a YAML error: {e:?}")
    };
    assert!(line.is_some(), "{e}");
    assert!(e.to_string().starts_with("bad.yaml:"), "{e}");

    let e = parse_vmi(
        "bad.json",
        "{\"apiVersion\": \"kubevirt.io/v1\",\n \"kind\": }",
    )
    .expect_err("must fail");
    let Error::Json { line, column, .. } = &e else {
        panic!("not a JSON error: {e:?}")
    };
    assert_eq!((*line, *column), (2, 10));
    assert_eq!(e.to_string(), "bad.json:2:10");

    // A bad quantity is a parse error that names it.
    let bad_q = SEED.replace("memory: 64M", "memory: 64MB");
    let e = parse_vm("q.yaml", &bad_q).expect_err("must fail");
    let chain = format!(
        "{e}: {}",
        std::error::Error::source(&e)
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    assert!(chain.contains("\"64MB\""), "{chain}");

    let e = parse_vmi("vm-2.yaml", SEED).expect_err("a VM is not a VMI");
    assert!(matches!(e, Error::Kind { .. }), "{e:?}");
}

/// Applies `edit` to the seed's defaulted VMI and returns the validation errors.
fn refused(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<ValidationError> {
    let mut v = serde_json::to_value(seed_vmi()).expect("to json");
    edit(&mut v);
    let vmi: VirtualMachineInstance = serde_json::from_value(v).expect("still parses");
    validate_vmi(&vmi).expect_err("must be refused")
}

fn has(errs: &[ValidationError], field: &str, message: &str) {
    assert!(
        errs.iter()
            .any(|e| e.field == field && e.message == message),
        "missing {field}: {message}\n got {errs:#?}"
    );
}

/// A change to the seed's JSON.
type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;

#[test]
fn refused_specs_name_field_and_kubevirt_message() {
    use serde_json::json;
    let cases: Vec<(Edit, &str, &str)> = vec![
        (
            Box::new(|v| v["spec"]["domain"]["devices"]["interfaces"][1]["model"] = json!("vmxnet3")),
            "spec.domain.devices.interfaces[1].model",
            "interface spec.domain.devices.interfaces[1].name uses model vmxnet3 that is not supported.",
        ),
        (
            Box::new(|v| v["spec"]["domain"]["devices"]["interfaces"][0]["macAddress"] = json!("de:ad:be:ef")),
            "spec.domain.devices.interfaces[0].macAddress",
            "interface spec.domain.devices.interfaces[0].name has malformed MAC address (de:ad:be:ef).",
        ),
        (
            Box::new(|v| v["spec"]["domain"]["devices"]["interfaces"][0]["macAddress"] = json!("02:00:00:00:00:00")),
            "spec.domain.devices.interfaces[0].macAddress",
            "The requested MAC address is reserved for the in-pod bridge. Please choose another one.",
        ),
        (
            Box::new(|v| v["spec"]["domain"]["devices"]["interfaces"][1]["pciAddress"] = json!("0000:81:01")),
            "spec.domain.devices.interfaces[1].pciAddress",
            "interface spec.domain.devices.interfaces[1].name has malformed PCI address (0000:81:01).",
        ),
        (
            Box::new(|v| v["spec"]["networks"][1]["name"] = json!("other")),
            "spec.domain.devices.interfaces[1].name",
            "spec.domain.devices.interfaces[1].name 'ext-net' not found.",
        ),
        (
            Box::new(|v| v["spec"]["networks"][1]["name"] = json!("other")),
            "spec.networks[1].name",
            "spec.networks[1].name 'other' not found.",
        ),
        (
            Box::new(|v| v["spec"]["domain"]["devices"]["interfaces"][1]["name"] = json!("default")),
            "spec.domain.devices.interfaces[1].name",
            "Only one interface can be connected to one specific network",
        ),
        (
            Box::new(|v| v["spec"]["networks"][1] = json!({"name": "ext-net", "pod": {}})),
            "spec.interfaces",
            "more than one interface is connected to a pod network in spec.interfaces",
        ),
        (
            Box::new(|v| {
                let ifaces = &mut v["spec"]["domain"]["devices"]["interfaces"];
                ifaces[1] = json!({"name": "ext-net", "masquerade": {}});
            }),
            "spec.domain.devices.interfaces[1].name",
            "Masquerade interface only implemented with pod network",
        ),
        (
            Box::new(|v| v["spec"]["networks"][1]["multus"]["default"] = json!(true)),
            "spec.networks",
            "Pod network cannot be defined when Multus default network is defined",
        ),
        (
            Box::new(|v| v["spec"]["networks"][1]["multus"]["networkName"] = json!("")),
            "spec.networks[1]",
            "CNI delegating plugin must have a networkName",
        ),
        (
            Box::new(|v| v["spec"]["domain"]["devices"]["disks"][0]["name"] = json!("nodisk")),
            "spec.domain.devices.disks[0].name",
            "spec.domain.devices.disks[0].Name 'nodisk' not found.",
        ),
        (
            Box::new(|v| v["spec"]["domain"]["devices"]["disks"][0]["name"] = json!("nodisk")),
            "spec.domain.volumes[0].name",
            "spec.domain.volumes[0].name 'containerdisk' not found.",
        ),
        (
            Box::new(|v| v["spec"]["domain"]["devices"]["disks"][0]["disk"]["bus"] = json!("floppy")),
            "spec.domain.devices.disks[0].disk.bus",
            "spec.domain.devices.disks[0] is set with an unrecognized bus floppy, must be one of: [virtio scsi sata usb]",
        ),
        (
            Box::new(|v| {
                v["spec"]["domain"]["devices"]["disks"][0]["bootOrder"] = json!(1);
                v["spec"]["domain"]["devices"]["disks"][1]["bootOrder"] = json!(1);
            }),
            "spec.domain.devices.disks[1].bootOrder",
            "Boot order for spec.domain.devices.disks[1].bootOrder already set for a different device.",
        ),
        (
            Box::new(|v| {
                v["spec"]["domain"]["devices"]["disks"][0]["bootOrder"] = json!(1);
                v["spec"]["domain"]["devices"]["interfaces"][0]["bootOrder"] = json!(1);
            }),
            "spec.domain.devices.interfaces[0].bootOrder",
            "Boot order for spec.domain.devices.interfaces[0].bootOrder already set for a different device.",
        ),
        (
            Box::new(|v| v["spec"]["domain"]["devices"]["disks"][0]["bootOrder"] = json!(0)),
            "spec.domain.devices.disks[0].bootOrder",
            "spec.domain.devices.disks[0] must have a boot order > 0, if supplied",
        ),
        (
            Box::new(|v| {
                v["spec"]["volumes"][1]["cloudInitNoCloud"] = json!({"userData": "x".repeat(2049)});
            }),
            "spec.volumes[1].cloudInitNoCloud",
            "spec.volumes[1].cloudInitNoCloud userdata exceeds 2048 byte limit. Should use UserDataSecretRef for larger data.",
        ),
        (
            Box::new(|v| v["spec"]["volumes"][1]["cloudInitNoCloud"]["userData"] = json!("#cloud-config")),
            "spec.volumes[1].cloudInitNoCloud",
            "spec.volumes[1].cloudInitNoCloud must have only one userdatasource set.",
        ),
        (
            Box::new(|v| v["spec"]["volumes"][1]["cloudInitNoCloud"]["userDataBase64"] = json!("not base64!")),
            "spec.volumes[1].cloudInitNoCloud.userDataBase64",
            "spec.volumes[1].cloudInitNoCloud.userDataBase64.cloudInitNoCloud.userDataBase64 is not a valid base64 value.",
        ),
        (
            Box::new(|v| {
                v["spec"]["domain"]["devices"]["disks"]
                    .as_array_mut()
                    .expect("disks")
                    .push(json!({"name": "ci2", "disk": {"bus": "virtio"}}));
                v["spec"]["volumes"]
                    .as_array_mut()
                    .expect("volumes")
                    .push(json!({"name": "ci2", "cloudInitNoCloud": {"userData": "x"}}));
            }),
            "spec.volumes",
            "spec.volumes must have max one cloudInitNoCloud volume set",
        ),
        (
            Box::new(|v| {
                v["spec"]["domain"]["resources"] = json!({});
                v["spec"]["domain"]["memory"] = json!({});
            }),
            "spec.domain.resources.requests.memory",
            "no memory requested, at least one of 'spec.domain.memory.guest', 'spec.domain.memory.hugepages.size' or 'spec.domain.resources.requests.memory' must be set",
        ),
        (
            Box::new(|v| {
                v["spec"]["domain"]["resources"]["requests"]["memory"] = json!("512k");
                v["spec"]["domain"]["memory"] = json!({});
            }),
            "spec.domain.resources.requests.memory",
            "spec.domain.resources.requests.memory '512k': must be greater than or equal to 1M.",
        ),
        (
            Box::new(|v| v["spec"]["domain"]["resources"]["limits"] = json!({"memory": "32M"})),
            "spec.domain.memory.guest",
            "spec.domain.memory.guest '64M' must be equal to or less than the memory limit spec.domain.resources.limits.memory '32M'",
        ),
        (
            Box::new(|v| v["spec"]["domain"]["devices"]["interfaces"][0]["ports"] = json!([{"port": 80, "protocol": "SCTP"}])),
            "spec.domain.devices.interfaces[0].ports[0].protocol",
            "Unknown protocol, only TCP or UDP allowed",
        ),
        (
            Box::new(|v| v["spec"]["domain"]["firmware"] = json!({"serial": "bad serial"})),
            "spec.domain.firmware.serial",
            "spec.domain.firmware.serial must be made up of the following characters [A-Za-z0-9_.+-], if specified",
        ),
        (
            Box::new(|v| v["spec"]["domain"]["machine"]["type"] = json!("pc-i440fx-8.0")),
            "spec.domain.machine.type",
            "spec.domain.machine.type is not supported: pc-i440fx-8.0 (allowed values: [q35* pc-q35*])",
        ),
        (
            Box::new(|v| v["spec"]["domain"]["devices"]["interfaces"][1]["sriov"] = json!({})),
            "spec.domain.devices.interfaces[1].sriov",
            "spec.domain.devices.interfaces[1].sriov is not supported by oxivirt",
        ),
        (
            Box::new(|v| v["spec"]["domain"]["devices"]["disks"][1] = json!({"name": "cloudinitdisk", "cdrom": {"bus": "virtio"}})),
            "spec.domain.devices.disks[1].cdrom.bus",
            "Bus type virtio is invalid for CD-ROM device",
        ),
        (
            Box::new(|v| v["spec"]["domain"]["devices"]["disks"][1] = json!({"name": "cloudinitdisk", "disk": {}, "cdrom": {}})),
            "spec.domain.devices.disks[1]",
            "spec.domain.devices.disks[1] can only have a single target type defined",
        ),
        (
            Box::new(|v| v["spec"]["volumes"][0]["containerDisk"]["path"] = json!("disk/../x.img")),
            "spec.volumes[0].containerDisk",
            "spec.volumes[0].containerDisk must be an absolute path to a file without relative components",
        ),
        (
            Box::new(|v| v["spec"]["hostname"] = json!("Not_A_Label")),
            "spec.hostname",
            "spec.hostname does not conform to the kubernetes DNS_LABEL rules : a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        ),
        // Unsupported fields and devices say which field.
        (
            Box::new(|v| v["spec"]["domain"]["devices"]["interfaces"][0]["slirp"] = json!({})),
            "spec.domain.devices.interfaces[0].slirp",
            "spec.domain.devices.interfaces[0].slirp is not supported by oxivirt",
        ),
        (
            Box::new(|v| v["spec"]["domain"]["devices"]["gpus"] = json!([{"name": "g"}])),
            "spec.domain.devices.gpus",
            "spec.domain.devices.gpus is not supported by oxivirt",
        ),
        (
            Box::new(|v| v["spec"]["volumes"][0] = json!({"name": "containerdisk", "persistentVolumeClaim": {"claimName": "c"}})),
            "spec.volumes[0].persistentVolumeClaim",
            "spec.volumes[0].persistentVolumeClaim is not supported by oxivirt",
        ),
        (
            Box::new(|v| v["spec"]["volumes"][0] = json!({"name": "containerdisk", "dataVolume": {"name": "dv"}})),
            "spec.volumes[0].dataVolume",
            "spec.volumes[0].dataVolume is not supported by oxivirt",
        ),
        (
            Box::new(|v| v["spec"]["domain"]["memory"]["hugepages"] = json!({"pageSize": "2Mi"})),
            "spec.domain.memory.hugepages",
            "spec.domain.memory.hugepages is not supported by oxivirt",
        ),
        (
            Box::new(|v| v["spec"]["domain"]["firmware"] = json!({"bootloader": {"efi": {}}})),
            "spec.domain.firmware.bootloader.efi",
            "spec.domain.firmware.bootloader.efi is not supported by oxivirt",
        ),
    ];
    for (edit, field, message) in cases {
        has(&refused(edit), field, message);
    }
}

#[test]
fn every_supported_interface_model_is_accepted() {
    for model in [
        "virtio", "e1000", "e1000e", "igb", "ne2k_pci", "pcnet", "rtl8139",
    ] {
        let mut vmi = seed_vmi();
        vmi.spec.domain.devices.interfaces[1].model = Some(model.to_string());
        validate_vmi(&vmi).unwrap_or_else(|e| panic!("{model}: {e:?}"));
    }
}

#[test]
fn vm_template_errors_are_under_the_template() {
    let bad = SEED.replace("bridge: {}", "bridge: {}\n            model: vmxnet3");
    let vm = parse_vm("vm.yaml", &bad).expect("parses");
    let errs = validate_vm(&vm).expect_err("refused");
    has(
        &errs,
        "spec.template.spec.domain.devices.interfaces[1].model",
        "interface spec.template.spec.domain.devices.interfaces[1].name uses model vmxnet3 that is not supported.",
    );
}

#[test]
fn json_schema_is_generated_from_the_types() {
    let schema = schemars::schema_for!(VirtualMachineInstance);
    let text = serde_json::to_string(&schema).expect("schema serializes");
    // Quantities are published as Kubernetes does; camelCase names as KubeVirt's.
    assert!(text.contains("x-kubernetes-int-or-string"), "{text}");
    assert!(text.contains("terminationGracePeriodSeconds"), "{text}");
    assert!(text.contains("vmIPv6NetworkCIDR"), "{text}");
}

#[test]
fn vm_template_gets_kubevirts_firmware_uuid() {
    // UUIDv5 of "testvm-2" in KubeVirt's namespace, computed independently (Python's uuid5).
    let vmi = seed_vmi();
    let fw = vmi.spec.domain.firmware.as_ref().expect("firmware");
    assert_eq!(
        fw.uuid.as_deref(),
        Some("0e44be5a-ff12-52fb-9413-07b52f3593c3")
    );
    // A UUID given in the template is kept.
    let given = SEED.replace(
        "      domain:\n",
        "      domain:\n        firmware: {uuid: 5d307ca9-b3ef-428c-8861-06e72d69f223}\n",
    );
    let vmi = parse_instance("vm.yaml", &given).expect("parses");
    let fw = vmi.spec.domain.firmware.as_ref().expect("firmware");
    assert_eq!(
        fw.uuid.as_deref(),
        Some("5d307ca9-b3ef-428c-8861-06e72d69f223")
    );
}

#[test]
fn quantities_in_messages_are_canonical_as_kubevirt_prints_them() {
    let mut vmi = seed_vmi();
    vmi.spec.domain.resources.limits.memory = Some("0.03125Gi".parse().expect("quantity"));
    let errs = validate_vmi(&vmi).expect_err("limit below guest");
    has(
        &errs,
        "spec.domain.memory.guest",
        "spec.domain.memory.guest '64M' must be equal to or less than the memory limit spec.domain.resources.limits.memory '32Mi'",
    );
}

#[test]
fn vmi_status_as_kubevirt_writes_it() {
    let text = r#"{
      "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
      "metadata": {"name": "testvm-2", "namespace": "default", "uid": "u-1", "resourceVersion": "7"},
      "spec": {"domain": {"devices": {}, "memory": {"guest": "64M"}}},
      "status": {
        "phase": "Running", "nodeName": "node1",
        "interfaces": [
          {"name": "default", "mac": "52:54:00:5a:6b:7c", "ipAddress": "10.0.2.2",
           "ipAddresses": ["10.0.2.2", "fd10:0:2::2"], "interfaceName": "eth0",
           "infoSource": "domain, guest-agent"}
        ],
        "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": null}],
        "launcherPid": 42
      }
    }"#;
    let vmi = parse_vmi("status.json", text).expect("parses");
    assert_eq!(vmi.metadata.uid.as_deref(), Some("u-1"));
    assert!(vmi.metadata.extra.contains_key("resourceVersion"));
    let st = vmi.status.as_ref().expect("status");
    assert_eq!(st.phase.as_deref(), Some("Running"));
    assert_eq!(st.interfaces[0].ip_addresses.len(), 2);
    assert_eq!(st.interfaces[0].interface_name.as_deref(), Some("eth0"));
    assert_eq!(st.conditions[0].condition_type, "Ready");
    // Launcher-specific extras are kept, not dropped.
    assert_eq!(st.extra.get("launcherPid"), Some(&serde_json::json!(42)));
    let back: serde_json::Value = serde_json::to_value(&vmi).expect("serialize");
    assert_eq!(
        back["status"]["interfaces"][0]["infoSource"],
        "domain, guest-agent"
    );
    assert_eq!(back["metadata"]["resourceVersion"], "7");
}

#[test]
fn read_instance_names_the_missing_file() {
    let e = oxivirt_api::read_instance(std::path::Path::new("/nonexistent/vmi.yaml"))
        .expect_err("no file");
    assert!(matches!(e, Error::Read { .. }));
    assert_eq!(e.to_string(), "failed to read /nonexistent/vmi.yaml");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vm-2.yaml");
    let vmi = oxivirt_api::read_instance(&path).expect("fixture reads");
    assert_eq!(vmi.metadata.name.as_deref(), Some("testvm-2"));
}

#[test]
fn unbound_interfaces_get_bridge_and_unmodelled_bindings_are_refused() {
    let unbound = SEED.replace("            bridge: {}\n", "");
    let mut vmi = parse_instance("vm.yaml", &unbound).expect("parses");
    assert_eq!(vmi.spec.domain.devices.interfaces[1].binding(), None);
    set_defaults(&mut vmi.spec);
    assert_eq!(
        vmi.spec.domain.devices.interfaces[1].binding(),
        Some(Binding::Bridge)
    );
    validate_vmi(&vmi).expect("valid");

    let passt = SEED.replace("            bridge: {}\n", "            passt: {}\n");
    let mut vmi = parse_instance("vm.yaml", &passt).expect("parses");
    set_defaults(&mut vmi.spec);
    assert_eq!(vmi.spec.domain.devices.interfaces[1].binding(), None);
    let errs = validate_vmi(&vmi).expect_err("passt is not run by oxivirt");
    has(
        &errs,
        "spec.domain.devices.interfaces[1].passt",
        "spec.domain.devices.interfaces[1].passt is not supported by oxivirt",
    );
}
