//! Bad input for apply: every case refused with a message a user can act on, and nothing
//! stored. Each case goes through the API directly (status code, Status `reason`, a key
//! part of the message) and, where kubectl sends it on, through the real `kubectl apply
//! -f` (what kubectl prints). Bodies kubectl refuses itself (YAML that does not parse, a
//! kind the server does not serve) are checked for kubectl's own words, then sent to the
//! API as they are.

mod common;

use std::path::Path;

use common::*;
use serde_json::{json, Value};

/// One bad document.
struct Case {
    what: &'static str,
    /// Where it is POSTed (a collection path).
    path: String,
    body: Body,
    code: u16,
    /// The Status `reason` ("" for a webhook's denial, as from KubeVirt).
    reason: &'static str,
    /// In the Status message, and in kubectl's output.
    message: String,
    /// What kubectl prints instead when it refuses the file itself (None: it reaches the
    /// server and prints `message`); `Skip` when kubectl cannot send it at all.
    kubectl: Kubectl,
}

enum Body {
    Json(Value),
    Raw(Vec<u8>, &'static str),
}

enum Kubectl {
    Server,
    Says(String),
    Skip,
}

/// Sets the member at `pointer` (its parent must exist).
fn set(v: &mut Value, pointer: &str, to: Value) {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
    let p = v
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("no {parent} in the seed VM"));
    match p {
        Value::Object(m) => {
            m.insert(key.to_string(), to);
        }
        Value::Array(a) => a[key.parse::<usize>().expect("index")] = to,
        _ => panic!("{parent} holds no members"),
    }
}

fn vm_with(f: impl FnOnce(&mut Value)) -> Value {
    let mut v = seed_vm("testvm-2");
    f(&mut v);
    v
}

const TEMPLATE: &str = "/spec/template/spec";

/// The seed's NAD with its quote closed, `config` replaced.
fn nad(config: Value) -> Value {
    json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "multus-br"}, "spec": {"config": config}})
}

/// The seed NAD's config as the YAML single-quoted scalar folds it: one line.
fn seed_config() -> String {
    let yaml = std::fs::read_to_string(seed("multus-bridge.yaml")).expect("seed NAD");
    let start = yaml.find("config: '").expect("config") + "config: '".len();
    yaml[start..]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn cases() -> Vec<Case> {
    let vms = VMS.to_string();
    let nads = NADS.to_string();
    let server = |c: u16, r: &'static str, m: &str| (c, r, m.to_string(), Kubectl::Server);
    let mut out = Vec::new();
    let mut add = |what, path: &String, body, (code, reason, message, kubectl)| {
        out.push(Case {
            what,
            path: path.clone(),
            body,
            code,
            reason,
            message,
            kubectl,
        })
    };
    let seed_nad = std::fs::read(seed("multus-bridge.yaml")).expect("seed NAD");
    add(
        "the seed's NAD as it is (an unclosed quote)",
        &nads,
        Body::Raw(seed_nad, "application/yaml"),
        (
            400,
            "BadRequest",
            "the request body is not JSON: line 1, column 1".into(),
            Kubectl::Says(
                "error converting YAML to JSON: yaml: line 16: found unexpected end of stream"
                    .into(),
            ),
        ),
    );
    add(
        "apiVersion kubevirt.io/v2",
        &vms,
        Body::Json(vm_with(|v| set(v, "/apiVersion", json!("kubevirt.io/v2")))),
        (
            400,
            "BadRequest",
            "the API version in the data (kubevirt.io/v2) does not match the expected API version (kubevirt.io/v1)".into(),
            Kubectl::Says("no matches for kind \"VirtualMachine\" in version \"kubevirt.io/v2\"\nensure CRDs are installed first".into()),
        ),
    );
    add(
        "a collection path of kubevirt.io/v2",
        &"/apis/kubevirt.io/v2/namespaces/default/virtualmachines".to_string(),
        Body::Json(vm_with(|v| set(v, "/apiVersion", json!("kubevirt.io/v2")))),
        (
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
            Kubectl::Skip,
        ),
    );
    add(
        "kind VirtualMachin",
        &vms,
        Body::Json(vm_with(|v| set(v, "/kind", json!("VirtualMachin")))),
        (
            400,
            "BadRequest",
            "the kind in the data (VirtualMachin) does not match the expected kind (VirtualMachine)".into(),
            Kubectl::Says("no matches for kind \"VirtualMachin\" in version \"kubevirt.io/v1\"".into()),
        ),
    );
    let subdomain = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
    add(
        "an uppercase name",
        &vms,
        Body::Json(vm_with(|v| set(v, "/metadata/name", json!("TestVM-2")))),
        server(
            422,
            "Invalid",
            &format!("metadata.name: Invalid value: \"TestVM-2\": {subdomain}"),
        ),
    );
    let long = "a".repeat(254);
    add(
        "a name of 254 characters",
        &vms,
        Body::Json(vm_with(|v| set(v, "/metadata/name", json!(long)))),
        server(
            422,
            "Invalid",
            &format!(
                "metadata.name: Invalid value: \"{long}\": must be no more than 253 characters"
            ),
        ),
    );
    add(
        "a name with an underscore",
        &vms,
        Body::Json(vm_with(|v| set(v, "/metadata/name", json!("test_vm")))),
        server(
            422,
            "Invalid",
            &format!("metadata.name: Invalid value: \"test_vm\": {subdomain}"),
        ),
    );
    add(
        "no name",
        &vms,
        Body::Json(vm_with(|v| {
            if let Some(m) = v["metadata"].as_object_mut() {
                m.remove("name");
            }
        })),
        (
            422,
            "Invalid",
            "metadata.name: Required value: name or generateName is required".into(),
            Kubectl::Says("error: error when retrieving current configuration".into()),
        ),
    );
    let webhook = "admission webhook \"virtualmachine-validator.kubevirt.io\" denied the request: ";
    add(
        "running and runStrategy both",
        &vms,
        Body::Json(vm_with(|v| set(v, "/spec/runStrategy", json!("Always")))),
        server(422, "", &format!("{webhook}spec.running: Running and RunStrategy are mutually exclusive. Note that Running is deprecated, please use RunStrategy instead")),
    );
    add(
        "an interface without a network of its name",
        &vms,
        Body::Json(vm_with(|v| {
            set(v, &format!("{TEMPLATE}/networks"), json!([{"name": "default", "pod": {}}]))
        })),
        server(422, "", &format!("{webhook}spec.template.spec.domain.devices.interfaces[1].name: spec.template.spec.domain.devices.interfaces[1].name 'ext-net' not found.")),
    );
    add(
        "a network without an interface of its name",
        &vms,
        Body::Json(vm_with(|v| {
            set(
                v,
                &format!("{TEMPLATE}/domain/devices/interfaces"),
                json!([{"name": "default", "masquerade": {}}]),
            )
        })),
        server(422, "", &format!("{webhook}spec.template.spec.networks[1].name: spec.template.spec.networks[1].name 'ext-net' not found.")),
    );
    add(
        "two pod networks",
        &vms,
        Body::Json(vm_with(|v| set(v, &format!("{TEMPLATE}/networks/1"), json!({"name": "ext-net", "pod": {}})))),
        server(422, "", "more than one interface is connected to a pod network in spec.template.spec.interfaces"),
    );
    add(
        "memory 64Q",
        &vms,
        Body::Json(vm_with(|v| set(v, &format!("{TEMPLATE}/domain/resources/requests/memory"), json!("64Q")))),
        server(422, "Invalid", "spec.template.spec.domain.resources.requests.memory: quantity \"64Q\": quantities must match the regular expression"),
    );
    add(
        "userData over 2048 bytes",
        &vms,
        Body::Json(vm_with(|v| {
            set(v, &format!("{TEMPLATE}/volumes/1/cloudInitNoCloud"), json!({"userData": "#cloud-config\n".to_string() + &"x".repeat(2048)}))
        })),
        server(422, "", "spec.template.spec.volumes[1].cloudInitNoCloud userdata exceeds 2048 byte limit. Should use UserDataSecretRef for larger data."),
    );
    add(
        "an unknown binding plugin",
        &vms,
        Body::Json(vm_with(|v| {
            set(
                v,
                &format!("{TEMPLATE}/domain/devices/interfaces/1"),
                json!({"name": "ext-net", "binding": {"name": "passt"}}),
            )
        })),
        server(
            422,
            "",
            "spec.template.spec.domain.devices.interfaces[1].binding is not supported by oxivirt",
        ),
    );
    add(
        "an unknown binding method",
        &vms,
        Body::Json(vm_with(|v| {
            set(
                v,
                &format!("{TEMPLATE}/domain/devices/interfaces/1"),
                json!({"name": "ext-net", "macvtap2": {}}),
            )
        })),
        server(
            422,
            "",
            "spec.template.spec.domain.devices.interfaces[1].macvtap2 is not supported by oxivirt",
        ),
    );
    add(
        "a multus networkName with two slashes",
        &vms,
        Body::Json(vm_with(|v| set(v, &format!("{TEMPLATE}/networks/1/multus/networkName"), json!("a/b/c")))),
        server(422, "Invalid", "spec.template.spec.networks[1].multus.networkName: Invalid value: \"a/b/c\": must be [namespace/]name of a NetworkAttachmentDefinition"),
    );
    add(
        "a multus networkName that is no name",
        &vms,
        Body::Json(vm_with(|v| set(v, &format!("{TEMPLATE}/networks/1/multus/networkName"), json!("Multus_BR")))),
        server(422, "Invalid", "spec.template.spec.networks[1].multus.networkName: Invalid value: \"Multus_BR\": must be [namespace/]name of a NetworkAttachmentDefinition"),
    );
    add(
        "a multus networkName with a bad namespace",
        &vms,
        Body::Json(vm_with(|v| {
            set(
                v,
                &format!("{TEMPLATE}/networks/1/multus/networkName"),
                json!("Team/multus-br"),
            )
        })),
        server(
            422,
            "Invalid",
            "the namespace \"Team\" a lowercase RFC 1123 label must consist of",
        ),
    );
    add(
        "an unknown field spec.template.spec.domain.foo",
        &vms,
        Body::Json(vm_with(|v| set(v, &format!("{TEMPLATE}/domain/foo"), json!("bar")))),
        server(422, "", "spec.template.spec.domain.foo: spec.template.spec.domain.foo is not supported by oxivirt"),
    );
    add(
        "an unknown top-level field spex",
        &vms,
        Body::Json(vm_with(|v| v["spex"] = json!({"running": true}))),
        server(400, "BadRequest", "VirtualMachine in version \"v1\" cannot be handled as a VirtualMachine: strict decoding error: unknown field \"spex\""),
    );
    add(
        "no spec",
        &vms,
        Body::Json(vm_with(|v| {
            if let Some(m) = v.as_object_mut() {
                m.remove("spec");
            }
        })),
        server(422, "Invalid", "missing field `spec`"),
    );
    add(
        "a document over 3 MiB",
        &vms,
        Body::Json(vm_with(|v| {
            set(
                v,
                "/metadata/annotations",
                json!({"big": "x".repeat(3 * 1024 * 1024 + 1)}),
            )
        })),
        server(
            413,
            "RequestEntityTooLarge",
            "the request body is too large: at most 1572864 bytes",
        ),
    );
    // The seed's config with its quote closed but a comma missing: one line, as YAML
    // folds it, so the column is what finds it.
    let broken = seed_config().replace(
        "\"bridge\": \"multus-bridge\",",
        "\"bridge\": \"multus-bridge\"",
    );
    let col = broken.find("\"ipam\"").expect("ipam") + 1;
    add(
        "a NAD whose config misses a comma",
        &nads,
        Body::Json(nad(json!(broken))),
        server(
            422,
            "Invalid",
            &format!("spec.config: invalid JSON at line 1, column {col} of the config, after '"),
        ),
    );
    add(
        "a NAD whose config misses a comma: what is before the fault and what was expected",
        &nads,
        Body::Json(nad(json!(broken))),
        server(
            422,
            "Invalid",
            "\"bridge\": \"multus-bridge\" \"': expected `,` or `}`",
        ),
    );
    add(
        "a NAD whose config is cut short (multi-line)",
        &nads,
        Body::Json(nad(json!("{\n  \"cniVersion\": \"0.3.1\",\n  \"type\": \"bridge\",\n  \"ipam\": {\"type\": \"host-local\"\n"))),
        server(422, "Invalid", "spec.config: invalid JSON at line 5, column 0 of the config: EOF while parsing an object"),
    );
    add(
        "a NAD whose config is YAML, not a string",
        &nads,
        Body::Json(nad(json!({"cniVersion": "0.3.1", "type": "bridge"}))),
        server(422, "Invalid", "spec.config: Invalid value: {\"cniVersion\":\"0.3.1\",\"type\":\"bridge\"}: spec.config must be a string"),
    );
    add(
        "a NAD whose config is JSON but no object",
        &nads,
        Body::Json(nad(json!("[\"bridge\"]"))),
        server(
            422,
            "Invalid",
            "spec.config: must be a JSON object (a CNI network configuration)",
        ),
    );
    add(
        "a NAD with an unknown field",
        &nads,
        Body::Json({
            let mut n = nad(json!(seed_config()));
            n["spec"]["conifg"] = json!("{}");
            n
        }),
        server(422, "Invalid", "spec.conifg: field not declared in schema"),
    );
    add(
        "a namespace that does not exist",
        &"/apis/kubevirt.io/v1/namespaces/nope/virtualmachines".to_string(),
        Body::Json(vm_with(|v| set(v, "/metadata/namespace", json!("nope")))),
        server(404, "NotFound", "namespaces \"nope\" not found"),
    );
    add(
        "a namespace other than the path's",
        &vms,
        Body::Json(vm_with(|v| set(v, "/metadata/namespace", json!("other")))),
        (
            400,
            "BadRequest",
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
            Kubectl::Skip,
        ),
    );
    add(
        "a body that is not JSON",
        &vms,
        Body::Raw(
            b"apiVersion: kubevirt.io/v1\nkind: VirtualMachine\n".to_vec(),
            "application/json",
        ),
        (
            400,
            "BadRequest",
            "the request body is not JSON: line 1, column 1: expected value".into(),
            Kubectl::Skip,
        ),
    );
    add(
        "JSON that is not an object",
        &vms,
        Body::Raw(
            b"[{\"kind\": \"VirtualMachine\"}]".to_vec(),
            "application/json",
        ),
        (
            400,
            "BadRequest",
            "the object is not a JSON object".into(),
            Kubectl::Skip,
        ),
    );
    add(
        "a body cut short",
        &vms,
        Body::Raw(
            b"{\"apiVersion\": \"kubevirt.io/v1\", \"kind\": ".to_vec(),
            "application/json",
        ),
        (
            400,
            "BadRequest",
            "the request body is not JSON: line 1, column 41: EOF while parsing a value".into(),
            Kubectl::Skip,
        ),
    );
    out
}

fn kubectl_apply(d: &Daemon, dir: &Path, i: usize, c: &Case) -> Option<String> {
    if matches!(c.kubectl, Kubectl::Skip) || kubectl().is_none() {
        return None;
    }
    let file = dir.join(format!("case-{i}.json"));
    match &c.body {
        Body::Json(v) => std::fs::write(&file, serde_json::to_vec_pretty(v).expect("encode")),
        // kubectl reads YAML too: the raw bytes as they are, under a name it parses as YAML.
        Body::Raw(b, _) => std::fs::write(file.with_extension("yaml"), b),
    }
    .expect("write case");
    let file = match &c.body {
        Body::Json(_) => file,
        Body::Raw(..) => file.with_extension("yaml"),
    };
    let out = d.kubectl(&["apply", "-f", file.to_str().expect("path")]);
    let t = text(&out);
    assert!(
        !out.status.success(),
        "{}: kubectl accepted it: {t}",
        c.what
    );
    Some(t)
}

#[test]
fn bad_input_is_refused_with_a_reason_and_nothing_is_stored() {
    let dir = tmp("oxivirtd-corpus");
    let d = Daemon::start(&dir.path().join("data"));
    let c = Client::admin(&d);
    let cases = cases();
    assert!(cases.len() >= 25, "{} cases", cases.len());
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (bytes, ctype) = match &case.body {
            Body::Json(v) => (serde_json::to_vec(v).expect("encode"), "application/json"),
            Body::Raw(b, t) => (b.clone(), *t),
        };
        let (code, s) = c.call_raw("POST", &case.path, Some(&bytes), ctype);
        let message = s["message"].as_str().unwrap_or("");
        if code != case.code
            || s["kind"] != "Status"
            || s["code"] != case.code
            || s["reason"].as_str() != Some(case.reason)
            || !message.contains(&case.message)
        {
            failures.push(format!(
                "{}: want {} {:?} {:?}\n   got {code} {s}",
                case.what, case.code, case.reason, case.message
            ));
        }
        if let Some(said) = kubectl_apply(&d, dir.path(), i, case) {
            let want = match &case.kubectl {
                Kubectl::Says(w) => w.clone(),
                _ => case.message.clone(),
            };
            if !said.contains(&want) {
                failures.push(format!(
                    "{} (kubectl): want {want:?}\n   got {said}",
                    case.what
                ));
            }
            // What kubectl prints names the server's reason, as for the API server.
            let marker = match (case.code, case.reason) {
                (_, _) if matches!(case.kubectl, Kubectl::Says(_)) => String::new(),
                (422, "Invalid") => " is invalid: ".to_string(),
                (422, "") => "Error from server: error when creating".to_string(),
                (_, r) => format!("Error from server ({r}): error when creating"),
            };
            if !said.contains(&marker) {
                failures.push(format!(
                    "{} (kubectl): want {marker:?}\n   got {said}",
                    case.what
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Nothing of it was stored, anywhere.
    for path in [
        "/apis/kubevirt.io/v1/virtualmachines",
        "/apis/k8s.cni.cncf.io/v1/network-attachment-definitions",
    ] {
        assert!(c.names(path).is_empty(), "{path}: {:?}", c.names(path));
    }
    let (_, namespaces) = c.get("/api/v1/namespaces");
    assert_eq!(
        namespaces["items"].as_array().map(Vec::len),
        Some(1),
        "{namespaces}"
    );

    // And the good documents still go in after all that.
    let (code, v) = c.post(VMS, &seed_vm("testvm-2"));
    assert_eq!(code, 201, "{v}");
    let (code, n) = c.post(NADS, &nad(json!(seed_config())));
    assert_eq!(code, 201, "{n}");
}

#[test]
fn patch_bodies_are_checked_too() {
    let dir = tmp("oxivirtd-corpus-patch");
    let d = Daemon::start(&dir.path().join("data"));
    let c = Client::admin(&d);
    let (code, vm) = c.post(VMS, &seed_vm("testvm-2"));
    assert_eq!(code, 201, "{vm}");
    let path = format!("{VMS}/testvm-2");
    let cases: [(&str, &[u8], u16, &str, &str); 6] = [
        (
            "application/json",
            b"{}",
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json",
        ),
        (
            "text/plain",
            b"{}",
            415,
            "UnsupportedMediaType",
            "accepted media types include",
        ),
        (
            "application/apply-patch+yaml",
            b"{}",
            415,
            "UnsupportedMediaType",
            "server-side apply is not supported; use kubectl apply without --server-side",
        ),
        (
            "application/merge-patch+json",
            b"{\"spec\": ",
            400,
            "BadRequest",
            "the request body is not JSON",
        ),
        (
            "application/json-patch+json",
            b"{\"op\": \"add\"}",
            422,
            "Invalid",
            "a JSON patch must be an array of operations",
        ),
        (
            "application/merge-patch+json",
            b"{\"spec\": {\"template\": {\"spec\": {\"domain\": {\"resources\": {\"requests\": {\"memory\": \"64Q\"}}}}}}}",
            422,
            "Invalid",
            "quantity \"64Q\"",
        ),
    ];
    for (ctype, body, want, reason, part) in cases {
        let (code, s) = c.call_raw("PATCH", &path, Some(body), ctype);
        assert_eq!(code, want, "{ctype}: {s}");
        assert_eq!(s["reason"], reason, "{ctype}: {s}");
        assert!(
            s["message"].as_str().unwrap_or("").contains(part),
            "{ctype}: {part:?} not in {s}"
        );
    }
    // The object is as it was.
    let (_, now) = c.get(&path);
    assert_eq!(rv(&now), rv(&vm));
}
