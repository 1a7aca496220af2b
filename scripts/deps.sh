#!/usr/bin/env bash
# Installs what the tests and the demo need, when missing (Debian packages).
set -euo pipefail
need=()
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
command -v nft >/dev/null || need+=(nftables)
command -v ip >/dev/null || need+=(iproute2)
command -v ping >/dev/null || need+=(iputils-ping)
command -v busybox >/dev/null || need+=(busybox)
command -v dhclient >/dev/null || need+=(isc-dhcp-client)
command -v curl >/dev/null || need+=(curl)
command -v skopeo >/dev/null || need+=(skopeo)
command -v docker-registry >/dev/null || need+=(docker-registry)
# A gRPC implementation other than ours, for the kubelet's side of the device plugin test.
/usr/bin/python3 -c 'import grpc' 2>/dev/null || need+=(python3-grpcio)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The test guest (scripts/guest.sh) and booting it: kernel source and build tools, busybox,
# dhcpcd (the guest's DHCPv6 client), disk tools, a registry and skopeo to serve it, QEMU;
# runc, to run the launcher pod's container as a container runtime does.
need=()
[ -f /usr/src/linux-source-6.1.tar.xz ] || need+=(linux-source-6.1)
for p in build-essential bc bison flex libelf-dev libssl-dev busybox-static dhcpcd-base mtools \
  syslinux syslinux-common dosfstools fdisk cpio xz-utils lz4 skopeo docker-registry genisoimage runc; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# QEMU comes from backports: bookworm's 7.2 conflicts with the preinstalled backports qemu-utils.
if ! command -v qemu-system-x86_64 >/dev/null; then
  if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "adding the bookworm-backports apt source"
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      >/etc/apt/sources.list.d/bookworm-backports.sources
  fi
  echo "installing: qemu-system-x86 (bookworm-backports)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-x86 >/dev/null
fi
