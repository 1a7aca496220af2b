#!/usr/bin/env bash
# The main job: the seed article (KubeVirt + Multus, part 2) on one machine with oxivirt and
# no Kubernetes. Everything runs inside network namespaces of its own:
#
#   node     the article's node: bridge multus-bridge with uplink enp8s0, oxivirtd (the API,
#            the controllers, the pod runtime), a local registry as the quay.io mirror
#   outside  the network behind enp8s0: the gateway 192.168.100.1
#
# Then, as in the article: kubectl apply of multus-bridge.yaml (refused as written: its
# quote is not closed) and fixed, vm-2.yaml verbatim, kubectl get VirtualMachine, start,
# the console session, the guest reached from outside, the pod's namespace and bridge;
# stop and delete; and the machine is left as it was found.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '\033[2m$ %s\033[0m\n' "$*"; }

step "installing what the demo needs (Debian packages)"
bash scripts/deps.sh
step "building oxivirt (release)"
cargo build --release --quiet -p oxivirt-app-daemon -p oxivirt-app-cli -p oxivirt-app-launcher \
  -p oxivirt-app-cni -p oxivirt-app-multus
rel=$repo/target/x86_64-unknown-linux-gnu/release
step "the test guest as a containerDisk (built once, then cached; the first build compiles a kernel)"
guest=$(bash scripts/guest.sh | tail -n 1)

kubectl=/usr/lib/google-cloud-sdk/bin/kubectl
if [ ! -x "$kubectl" ]; then kubectl=$(command -v kubectl || true); fi
if [ -z "$kubectl" ]; then
  echo "demo: no kubectl on this machine; the kubectl lines use oxivirt instead"
  kubectl=$rel/oxivirt
fi

# What an earlier run killed outright left (names end in its pid): only where that pid
# is gone.
for ns in $(ip netns list | awk '{print $1}' | grep -E '^oxd-(node|out)-[0-9]+$' || true); do
  [ -d "/proc/${ns##*-}" ] || ip netns del "$ns" 2>/dev/null || true
done

sfx=$$
work=$(mktemp -d -t "oxd-$sfx.XXXXXX")
node=oxd-node-$sfx out=oxd-out-$sfx
data=$work/data
daemon_pid= registry_pid= console_pid=
# The seed NAD's host-local keeps its addresses where host-local does by default; the demo
# removes what it made there.
ipam_dir=/var/lib/cni/networks/multus-br
ipam_existed=0; [ -e "$ipam_dir" ] && ipam_existed=1
cleanup() {
  set +e
  [ -n "$console_pid" ] && kill "$console_pid" 2>/dev/null
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    # Whatever VM is still there goes with its pod (the daemon stops it).
    ip netns exec "$node" env KUBECONFIG="$data/kubeconfig" "$rel/oxivirt" delete vm testvm-2 --ignore-not-found --timeout=60s >/dev/null 2>&1
    kill "$daemon_pid"; wait "$daemon_pid" 2>/dev/null
  fi
  # Launchers outlive a daemon by design; the demo's own go here.
  for rec in "$data"/pods/*.json; do
    [ -f "$rec" ] || continue
    pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("launcherPid") or "")' "$rec" 2>/dev/null)
    [ -n "$pid" ] && kill -KILL -- "-$pid" 2>/dev/null
  done
  for ns in $(ip netns list | awk '{print $1}' | grep '^oxv-' || true); do
    grep -qs "/run/netns/$ns" "$data"/pods/*.json && ip netns del "$ns" 2>/dev/null
  done
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null
  for ns in "$node" "$out"; do ip netns del "$ns" 2>/dev/null; done
  [ "$ipam_existed" = 0 ] && rm -rf "$ipam_dir"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "the node: multus-bridge with uplink enp8s0 to the outside (gateway 192.168.100.1)"
for ns in "$node" "$out"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n "$node" link add multus-bridge type bridge
ip -n "$node" link add enp8s0 type veth peer name eth0 netns "$out"
ip -n "$node" link set enp8s0 master multus-bridge
ip -n "$node" link set enp8s0 up
ip -n "$node" link set multus-bridge up
ip -n "$out" addr add 192.168.100.1/24 dev eth0
ip -n "$out" link set eth0 up
ip -n "$out" route add default dev eth0

step "a local registry as quay.io's mirror, holding the guest as kubevirt/cirros-container-disk-demo"
mkdir -p "$work/registry"
cat > "$work/registry/config.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry/storage
http:
  addr: 127.0.0.1:5000
YAML
ip netns exec "$node" docker-registry serve "$work/registry/config.yml" >"$work/registry/log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do ip netns exec "$node" bash -c 'exec 3<>/dev/tcp/127.0.0.1/5000' 2>/dev/null && break; sleep 0.1; done
ip netns exec "$node" skopeo copy --quiet --dest-tls-verify=false "oci:$guest:latest" \
  docker://127.0.0.1:5000/kubevirt/cirros-container-disk-demo:latest

step "oxivirtd on the node: the Kubernetes API for VMs, KubeVirt's controllers, the pod runtime"
mkdir -p "$work/bin" "$work/net.d"
for p in bridge host-local static macvlan; do ln -s "$rel/oxivirt-cni" "$work/bin/$p"; done
ln -s "$rel/oxivirt-multus" "$work/bin/multus"
# nsenter, not `ip netns exec`: the latter gives the daemon a mount namespace of its own,
# where the pods' namespaces it mounts under /run/netns would stay invisible to the host.
OXIVIRT_IPAM_INDEX_DIR=$work/ipam-index nsenter --net="/run/netns/$node" "$rel/oxivirtd" --data-dir "$data" --listen 127.0.0.1:6444 \
  --cni-conf-dir "$work/net.d" --cni-bin-dir "$work/bin" --launcher "$rel/oxivirt-launcher" \
  --registry-mirror quay.io=http://127.0.0.1:5000 >"$work/oxivirtd.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do [ -s "$data/kubeconfig" ] && grep -q serving "$work/oxivirtd.log" && break; sleep 0.1; done
head -n 1 "$work/oxivirtd.log"
export KUBECONFIG=$data/kubeconfig
k() { show "kubectl $*"; ip netns exec "$node" "$kubectl" "$@"; }
ox() { show "oxivirt $*"; ip netns exec "$node" "$rel/oxivirt" "$@"; }

step "the NetworkAttachmentDefinition, as the article wrote it"
cp examples/seed/multus-bridge.yaml examples/seed/vm-2.yaml "$work/"
cd "$work"
k apply -f multus-bridge.yaml || true
ox apply -f multus-bridge.yaml || true
echo "(the config's closing quote is missing; closed:)"
printf "'\n" >> multus-bridge.yaml
k apply -f multus-bridge.yaml
k get net-attach-def

step "the VM, vm-2.yaml verbatim"
k apply -f vm-2.yaml
for _ in $(seq 50); do
  [ "$(ip netns exec "$node" "$kubectl" get vm testvm-2 -o jsonpath='{.status.printableStatus}')" = Stopped ] && break
  sleep 0.1
done
k get VirtualMachine

step "start it (virtctl start: the same API)"
ox start testvm-2
start=$SECONDS
while [ "$(ip netns exec "$node" "$kubectl" get vm testvm-2 -o jsonpath='{.status.ready}')" != true ]; do
  if (( SECONDS - start > 180 )); then echo "demo: the VM did not become ready" >&2; tail -n 20 "$work/oxivirtd.log"; exit 1; fi
  sleep 0.2
done
k get VirtualMachine
k get vmi
k get pods -o wide

step "the console (virtctl console testvm-2)"
coproc CON { ip netns exec "$node" "$rel/oxivirt" console testvm-2 2>&1; }
console_pid=$CON_PID
con_buf=""
console_until() {
  local pat=$1 deadline=$((SECONDS + ${2:-60})) chunk
  while (( SECONDS < deadline )); do
    chunk=""
    IFS= read -r -t 0.3 -N 4096 chunk <&"${CON[0]}" || true
    # (the guest's shell asks the terminal for the cursor position: not for the reader)
    if [ -n "$chunk" ]; then printf '%s' "${chunk//$'\e[6n'/}"; con_buf+=$chunk; fi
    if [[ $con_buf == *"$pat"* ]]; then con_buf=${con_buf#*"$pat"}; return 0; fi
  done
  printf '\ndemo: the console did not show "%s"\n' "$pat" >&2
  return 1
}
console_send() { printf '%s\r' "$1" >&"${CON[1]}"; }
console_until "login:" 180
console_send cirros
console_until "Password:" 30
console_send gocubsgo
console_until '$ ' 30
console_send "sudo -i"
console_until '# ' 30
# The guest asks DHCP on every NIC at boot; its addresses are there within seconds.
console_send 'for i in $(seq 50); do ip -4 -o addr show eth1 | grep -q inet && break; sleep 0.2; done; ip a'
console_until '# ' 30
console_send "ping -c 3 192.168.100.1"
console_until '# ' 30
printf '\035' >&"${CON[1]}"   # ^] leaves
wait "$console_pid" 2>/dev/null || true
console_pid=
echo

step "from outside the node: the guest on its bridged NIC"
ip=$(ip netns exec "$node" "$kubectl" get vmi testvm-2 -o jsonpath='{.status.interfaces[1].ipAddress}')
show "ping -c 2 $ip   (from the outside network)"
ip netns exec "$out" ping -c 2 "$ip"
show "curl http://$ip/"
ip netns exec "$out" curl -sS -m 10 "http://$ip/"

step "digging down the rabbit hole: the launcher pod's namespace and the node's bridge"
pod_ns=$(basename "$(python3 -c 'import json,sys,glob; print(next(json.load(open(f))["netns"] for f in glob.glob(sys.argv[1]+"/pods/*.json")))' "$data")")
show "ip netns exec $pod_ns ip a"
ip netns exec "$pod_ns" ip a
show "bridge link show   (on the node)"
ip netns exec "$node" bridge link show

step "stop and delete"
ox stop testvm-2
while [ -n "$(ip netns exec "$node" "$kubectl" get pods -o name)" ]; do sleep 0.2; done
k get VirtualMachine
k delete -f vm-2.yaml
k delete -f multus-bridge.yaml
k get vm,vmi,pods,net-attach-def
if ip netns list | grep -q "^$pod_ns"; then echo "demo: the pod's namespace is still there" >&2; exit 1; fi
step "done: the machine is left as it was found"
