#!/usr/bin/env bash
# The main job: the seed scenario's secondary network, end to end, with oxivirt's CNI
# plugins. A "node" namespace holds bridge multus-bridge with an uplink to an "outside"
# namespace (192.168.100.1, the article's gateway); a "pod" namespace gets net1 from the
# NetworkAttachmentDefinition's config (bridge + host-local in 192.168.100.0/24), then
# traffic flows both ways, then DEL leaves nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release --quiet -p oxivirt-app-cni -p oxivirt-app-multus

# What an earlier run killed outright left (its names end in its pid): only where that
# pid no longer exists.
for ns in $(ip netns list | awk '{print $1}' | grep -E '^oxd-(node|pod|out)-[0-9]+$' || true); do
  [ -d "/proc/${ns##*-}" ] || ip netns del "$ns" 2>/dev/null || true
done
for d in "${TMPDIR:-/tmp}"/oxd-[0-9]*.*; do
  pid=${d##*/oxd-}; pid=${pid%%.*}
  if [ -d "$d" ] && [ ! -d "/proc/$pid" ]; then rm -rf "$d"; fi
done

sfx=$$
work=$(mktemp -d -t "oxd-$sfx.XXXXXX")
node=oxd-node-$sfx pod=oxd-pod-$sfx out=oxd-out-$sfx
cleanup() {
  for ns in "$pod" "$node" "$out"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
# Bash would die of SIGTERM without running the EXIT trap; as exits, both run it.
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$work/bin"
# host-local's index (tmpfs under /run on a real node) goes with the demo's work dir.
export OXIVIRT_IPAM_INDEX_DIR="$work/ipam-index"
for p in bridge host-local static macvlan; do ln -s "$PWD/target/x86_64-unknown-linux-gnu/release/oxivirt-cni" "$work/bin/$p"; done
for ns in "$node" "$pod" "$out"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done

echo "== node: bridge multus-bridge with uplink enp8s0 (as in the article)"
ip -n "$node" link add multus-bridge type bridge
ip -n "$node" link add enp8s0 type veth peer name eth0 netns "$out"
ip -n "$node" link set enp8s0 master multus-bridge
ip -n "$node" link set enp8s0 up
ip -n "$node" link set multus-bridge up
ip -n "$out" addr add 192.168.100.1/24 dev eth0
ip -n "$out" link set eth0 up

# The NetworkAttachmentDefinition's spec.config from seed/multus-bridge.yaml.
cat > "$work/multus-br.json" <<JSON
{
  "cniVersion": "0.3.1",
  "name": "multus-br",
  "type": "bridge",
  "bridge": "multus-bridge",
  "ipam": {
    "type": "host-local",
    "subnet": "192.168.100.0/24",
    "dataDir": "$work/ipam"
  }
}
JSON

cni() {
  ip netns exec "$node" env CNI_COMMAND="$1" CNI_CONTAINERID=demo-$sfx CNI_NETNS=/run/netns/$pod \
    CNI_IFNAME=net1 CNI_PATH="$work/bin" "$work/bin/bridge" < "$work/multus-br.json"
}

echo "== CNI ADD (bridge + host-local)"
cni ADD | tee "$work/result.json"
echo
ip=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ips"][0]["address"].split("/")[0])' "$work/result.json")
echo "== pod net1 got $ip"
ip -n "$pod" -br addr show dev net1
echo "== bridge ports on the node"
ip -n "$node" -br link show master multus-bridge

echo "== pod -> outside gateway 192.168.100.1"
ip netns exec "$pod" ping -c 2 -W 2 192.168.100.1
echo "== outside -> pod $ip"
ip netns exec "$out" ping -c 2 -W 2 "$ip"

echo "== CNI CHECK"
python3 - "$work/multus-br.json" "$work/result.json" > "$work/check.json" <<'PY'
import json, sys
# CHECK exists from spec 0.4.0 on: check the same attachment with a 1.0.0 config.
conf = json.load(open(sys.argv[1])); conf["cniVersion"] = "1.0.0"
conf["prevResult"] = json.load(open(sys.argv[2]))
print(json.dumps(conf))
PY
ip netns exec "$node" env CNI_COMMAND=CHECK CNI_CONTAINERID=demo-$sfx CNI_NETNS=/run/netns/$pod \
  CNI_IFNAME=net1 CNI_PATH="$work/bin" "$work/bin/bridge" < "$work/check.json"
echo "CHECK passed"

echo "== CNI DEL"
cni DEL
if ip -n "$pod" link show net1 >/dev/null 2>&1; then echo "net1 still present"; exit 1; fi
if ls "$work/ipam/multus-br" | grep -q '^192\.'; then echo "allocation leaked"; exit 1; fi
echo
echo "== the same network through the Multus-compatible meta plugin"
# The NAD as the article has it (its config quote is never closed): refused with the line.
store="$work/store"
mkdir -p "$store/network-attachment-definitions/default" "$store/pods/default" "$work/net.d"
cp examples/seed/multus-bridge.yaml "$store/network-attachment-definitions/default/multus-br.yaml"
cat > "$store/pods/default/virt-launcher-testvm-2.json" <<JSON
{"apiVersion": "v1", "kind": "Pod",
 "metadata": {"name": "virt-launcher-testvm-2", "namespace": "default", "uid": "demo-uid",
              "annotations": {"k8s.v1.cni.cncf.io/networks": "multus-br"}}}
JSON
cat > "$work/net.d/10-pod-network.conf" <<JSON
{"cniVersion": "1.0.0", "name": "pod-network", "type": "bridge", "bridge": "cni0",
 "isDefaultGateway": true, "ipMasq": true,
 "ipam": {"type": "host-local", "subnet": "10.244.0.0/24", "dataDir": "$work/ipam"}}
JSON
ln -s "$PWD/target/x86_64-unknown-linux-gnu/release/oxivirt-multus" "$work/bin/multus"
target/x86_64-unknown-linux-gnu/release/oxivirt-multus multus-autoconf --conf-dir "$work/net.d" \
  --store "$store" --cni-dir "$work/cache" --bin-dir "$work/bin"
meta() {
  ip netns exec "$node" env CNI_COMMAND="$1" CNI_CONTAINERID=meta-$sfx CNI_NETNS=/run/netns/$pod \
    CNI_IFNAME=eth0 CNI_PATH="$work/bin" \
    CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=virt-launcher-testvm-2;K8S_POD_INFRA_CONTAINER_ID=meta-$sfx" \
    "$work/bin/multus" < "$work/net.d/00-multus.conf"
}
echo "-- with the NAD verbatim from the article:"
if meta ADD; then echo "the unclosed quote was not reported"; exit 1; fi
echo
echo "-- with the quote closed:"
printf "'\n" >> "$store/network-attachment-definitions/default/multus-br.yaml"
meta ADD
echo
ip -n "$pod" -br addr show
python3 - "$store/pods/default/virt-launcher-testvm-2.json" <<'PY'
import json, sys
pod = json.load(open(sys.argv[1]))
print("network-status:", json.dumps(json.loads(pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"]), indent=1))
PY
ip netns exec "$pod" ping -c 1 -W 2 192.168.100.1
meta DEL
if ls "$work/ipam/multus-br" "$work/ipam/pod-network" 2>/dev/null | grep -q '^192\.\|^10\.'; then echo "allocation leaked"; exit 1; fi
echo "== demo passed: 2 passed, 0 failed"
