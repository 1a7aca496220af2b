#!/usr/bin/env bash
# Builds the test guest (Debian packages only: linux-source-6.1, busybox-static, syslinux) and
# packs it as a KubeVirt containerDisk OCI image layout. Prints that directory's path as the
# last line of stdout; progress goes to stderr.
#
#   OXIVIRT_CACHE       cache root (default /var/cache/oxivirt); output under $OXIVIRT_CACHE/guest
#   OXIVIRT_GUEST_JOBS  make -j for the kernel (default 2)
#
# Layout of $OXIVIRT_CACHE/guest:
#   kernel-<key>/   bzImage, config      (key: the kernel recipe below + linux-source version)
#   <key>/          bzImage, initramfs.cpio.lz4, disk.img (raw, bootable), disk.qcow2 (if qemu-img),
#                   oci/ (the containerDisk: disk/guest.img owned 107:107)
#                   (key: this whole script + the package versions it builds from)
# Each is built in a temporary directory beside it and renamed into place, under a lock, so
# concurrent callers build once and readers never see half an image. Old keys are not pruned
# (another checkout may still use them).
#
# The guest (64 MiB is plenty, 40 MiB boots; TCG or KVM): console and login on the first serial
# port (ttyS0, 115200); the disk on any bus SeaBIOS boots from; the NoCloud volume (ISO9660
# labelled cidata) as a virtio-blk disk or a virtio-scsi disk/cdrom (not SATA: the kernel has no
# libata); users cirros/gocubsgo and root (no password), `sudo -i` for root; every ethN gets DHCPv4 (udhcpc), eth0 also IPv6 (RA + DHCPv6 via dhcpcd);
# httpd on port 80 serves a page with the hostname; ACPI power button -> poweroff; pvpanic.
set -euo pipefail
# All in one compound command: bash parses it whole before running it, so editing or checking
# out this file while a build runs cannot change what the running build does.
{

say() { echo "guest.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

self=$(readlink -f "${BASH_SOURCE[0]}")
root=${OXIVIRT_CACHE:-/var/cache/oxivirt}/guest
jobs=${OXIVIRT_GUEST_JOBS:-2}
ksrc=/usr/src/linux-source-6.1.tar.xz

for t in busybox sfdisk mkfs.vfat mcopy syslinux cpio gzip lz4 python3 sha256sum flock make; do
  command -v "$t" >/dev/null || die "$t missing: run scripts/deps.sh"
done
[ -f "$ksrc" ] || die "$ksrc missing: run scripts/deps.sh (linux-source-6.1)"

pkgver() { dpkg-query -W -f='${Package}=${Version} ' "$@" 2>/dev/null || true; }

# Kernel options on top of tinyconfig. Every one is checked after olddefconfig, so a lost
# dependency fails the build instead of booting a guest without it.
kconfig_y=(
  KERNEL_LZ4 64BIT SMP HYPERVISOR_GUEST PARAVIRT KVM_GUEST NO_HZ_IDLE
  PRINTK BUG MULTIUSER FUTEX EPOLL SIGNALFD TIMERFD EVENTFD SHMEM AIO FILE_LOCKING POSIX_TIMERS
  SYSCTL PROC_FS PROC_SYSCTL SYSFS TMPFS DEVTMPFS BLK_DEV_INITRD RD_GZIP BINFMT_ELF BINFMT_SCRIPT
  TTY UNIX98_PTYS SERIAL_8250 SERIAL_8250_CONSOLE VIRTIO_CONSOLE
  PCI PCI_MSI ACPI ACPI_BUTTON INPUT INPUT_EVDEV
  VIRTIO_MENU VIRTIO VIRTIO_PCI VIRTIO_NET VIRTIO_BLK NETDEVICES NET_CORE
  BLOCK BLK_DEV SCSI BLK_DEV_SD BLK_DEV_SR SCSI_LOWLEVEL SCSI_VIRTIO
  EXT4_FS ISO9660_FS JOLIET MSDOS_FS VFAT_FS NLS NLS_CODEPAGE_437 NLS_ISO8859_1 NLS_UTF8
  NET UNIX INET IPV6 PACKET
  PVPANIC PVPANIC_MMIO PVPANIC_PCI MAGIC_SYSRQ RTC_CLASS RTC_HCTOSYS RTC_DRV_CMOS
)
# LZ4, not tinyconfig's XZ: a bigger bzImage, but TCG unpacks XZ for most of a second.
# No libata: probing the AHCI ports q35 always has (PIIX on pc) holds init back 0.3-0.6 s
# under TCG. Disks and cdroms the guest reads must be virtio-blk or virtio-scsi; SeaBIOS
# still boots from a SATA disk, and after that the guest runs from its initramfs.
kconfig_n=(KERNEL_XZ RD_BZIP2 RD_LZMA RD_XZ RD_LZO RD_ZSTD ATA)
kconfig_val=(SERIAL_8250_NR_UARTS=4 SERIAL_8250_RUNTIME_UARTS=4 NR_CPUS=8)
kernel_recipe="v1 ${kconfig_y[*]} / ${kconfig_n[*]} / ${kconfig_val[*]} $(pkgver linux-source-6.1)"
kkey=$(printf '%s' "$kernel_recipe" | sha256sum | cut -c1-16)
gkey=$(cat "$self" <(pkgver linux-source-6.1 busybox-static dhcpcd-base libc6 syslinux syslinux-common) | sha256sum | cut -c1-16)
kdir=$root/kernel-$kkey
gdir=$root/$gkey

if [ -f "$gdir/oci/index.json" ]; then echo "$gdir/oci"; exit 0; fi

mkdir -p "$root"
exec 9>"$root/.lock"
say "taking the cache lock $root/.lock"
flock 9
if [ -f "$gdir/oci/index.json" ]; then echo "$gdir/oci"; exit 0; fi

# Under the lock nobody else is building: what a killed build left is garbage.
rm -rf "$root"/.work-*
work=$(mktemp -d "$root/.work-XXXXXX")
trap 'rm -rf "$work"' EXIT

build_kernel() {
  local out=$work/kernel src=$work/linux-source-6.1
  say "kernel: unpacking $ksrc"
  tar -C "$work" -xJf "$ksrc"
  local mk=(make -C "$src" ARCH=x86_64 -s)
  "${mk[@]}" tinyconfig >&2
  local args=() o
  for o in "${kconfig_y[@]}"; do args+=(--enable "$o"); done
  for o in "${kconfig_n[@]}"; do args+=(--disable "$o"); done
  for o in "${kconfig_val[@]}"; do args+=(--set-val "${o%%=*}" "${o#*=}"); done
  "$src/scripts/config" --file "$src/.config" "${args[@]}"
  "${mk[@]}" olddefconfig >&2
  local missing=()
  for o in "${kconfig_y[@]}"; do grep -qx "CONFIG_$o=y" "$src/.config" || missing+=("$o"); done
  for o in "${kconfig_n[@]}"; do grep -qx "# CONFIG_$o is not set" "$src/.config" || missing+=("!$o"); done
  for o in "${kconfig_val[@]}"; do grep -qx "CONFIG_$o" "$src/.config" || missing+=("$o"); done
  [ ${#missing[@]} -eq 0 ] || die "kernel options not as asked after olddefconfig: ${missing[*]}"
  say "kernel: make -j$jobs bzImage (several minutes)"
  local t0=$SECONDS
  "${mk[@]}" -j"$jobs" bzImage >&2
  say "kernel: built in $((SECONDS - t0)) s"
  mkdir -p "$out"
  cp "$src/arch/x86/boot/bzImage" "$out/bzImage"
  cp "$src/.config" "$out/config"
  rm -rf "$src"
  mv "$out" "$kdir"
}

[ -f "$kdir/bzImage" ] || build_kernel
say "kernel: $kdir/bzImage ($(stat -c %s "$kdir/bzImage") bytes)"

# ---- userland: busybox-static in an initramfs ------------------------------------------------
rootfs=$work/rootfs
build_rootfs() {
  say "rootfs: busybox-static, dhcpcd (DHCPv6), cloud-init NoCloud stand-in, httpd, getty"
  local r=$rootfs a d
  mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc/init.d,etc/acpi/PWRF,proc,sys,dev,tmp,run,root,home/cirros,mnt/cidata,var/log,var/lib/cloud,var/lib/dhcpcd,var/www,usr/lib/dhcpcd}
  install -m 4755 /bin/busybox "$r/bin/busybox" # setuid: su, login and passwd need it
  for a in $(busybox --list-full); do
    [ -e "$r/$a" ] || ln -s /bin/busybox "$r/$a"
  done
  # DHCPv6: Debian's busybox has no udhcpc6; dhcpcd-base brings one (with its libc).
  install -m 755 /usr/sbin/dhcpcd "$r/usr/sbin/dhcpcd"
  for a in $(ldd /usr/sbin/dhcpcd | grep -o '/[^ ]*'); do
    d=$r$(dirname "$a"); mkdir -p "$d"; cp -L "$a" "$d/"
  done
  ln -s /bin/busybox "$r/init"
  chmod 1777 "$r/tmp"; chmod 700 "$r/root"

  cat >"$r/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
cirros:x:1000:1000:CirrOS stand-in user:/home/cirros:/bin/sh
dhcpcd:x:103:65534:DHCP client:/usr/lib/dhcpcd:/bin/false
EOF
  # root has no password: `su` (behind the sudo stand-in) then asks for none, and root can
  # log in on the console without one. cirros's password is CirrOS's.
  printf 'root::19000:0:99999:7:::\ncirros:%s:19000:0:99999:7:::\ndhcpcd:!:19000::::::\n' \
    "$(busybox mkpasswd -m sha512 -S oxivirt0 gocubsgo)" >"$r/etc/shadow"
  chmod 600 "$r/etc/shadow"
  printf 'root:x:0:\ncirros:x:1000:\nnogroup:x:65534:\n' >"$r/etc/group"
  printf '/bin/sh\n' >"$r/etc/shells"
  echo cirros >"$r/etc/hostname"
  printf '127.0.0.1 localhost\n::1 localhost\n' >"$r/etc/hosts"
  printf "login as 'cirros' user. default password: 'gocubsgo'. use 'sudo' for root.\n" >"$r/etc/issue"
  cat >"$r/etc/profile" <<'EOF'
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PS1='\u@\h:\w\$ '
EOF

  cat >"$r/usr/bin/sudo" <<'EOF'
#!/bin/sh
# A stand-in for sudo (busybox has none), enough for `sudo -i` and `sudo CMD...`: it becomes
# root through busybox su, which asks no password because root has none in this test guest.
# It checks nothing else; this is a throwaway test image, not a security boundary.
case "${1:-}" in
  -i|-s|"") exec su - root ;;
  --) shift ;;
esac
exec su root -c "$(printf '%s ' "$@")"
EOF
  chmod 755 "$r/usr/bin/sudo"

  cat >"$r/etc/inittab" <<'EOF'
::sysinit:/etc/init.d/rcS
ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100
::ctrlaltdel:/sbin/reboot
::shutdown:/etc/init.d/rcK
EOF

  # ACPI power button (QMP system_powerdown): the kernel's button driver reports KEY_POWER on
  # an input device; busybox acpid maps it to PWRF/00000080 and runs this, and busybox init
  # runs the ::shutdown: entries, then powers off through ACPI.
  printf '#!/bin/sh\necho "acpid: power button pressed, powering off" >/dev/console\nexec /sbin/poweroff\n' \
    >"$r/etc/acpi/PWRF/00000080"
  chmod 755 "$r/etc/acpi/PWRF/00000080"

  cat >"$r/etc/init.d/rcS" <<'EOF'
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
hostname -F /etc/hostname
chown -R cirros:cirros /home/cirros # the initramfs is all root's
ip link set lo up
echo "oxivirt test guest: $(uname -r), $(grep -c ^processor /proc/cpuinfo) cpu(s), $(awk '/MemTotal/{print $2}' /proc/meminfo) kB"
/sbin/acpid -l /var/log/acpid.log

# Every NIC: DHCPv4 with udhcpc; on eth0 also IPv6 (RA + DHCPv6 through dhcpcd).
for p in /sys/class/net/eth*; do
  [ -e "$p" ] || continue
  i=${p##*/}
  ip link set "$i" up
  udhcpc -f -S -i "$i" -s /etc/udhcpc.script -T 1 -t 60 -A 1 -p /run/udhcpc.$i.pid \
    >/dev/console 2>&1 &
done
if [ -e /sys/class/net/eth0 ]; then
  sysctl -qw net.ipv6.conf.eth0.accept_ra=2 # dhcpcd takes RAs over when it starts
  # In the background: its privilege separation takes a second under TCG.
  dhcpcd -6 -b -q -f /etc/dhcpcd.conf eth0 >/dev/console 2>&1 &
fi

/etc/init.d/cloud-init

/etc/init.d/www
httpd -p 80 -h /var/www
EOF

  cat >"$r/etc/init.d/cloud-init" <<'EOF'
#!/bin/sh
# A NoCloud stand-in: find the ISO9660 volume labelled cidata, take the hostname from
# meta-data's local-hostname, keep meta-data/user-data/network-config under /var/lib/cloud
# and run user-data when it is a script (as CirrOS does).
found=
for d in /dev/vd? /dev/sr? /dev/sd?; do
  [ -b "$d" ] || continue
  label=$(dd if="$d" bs=1 skip=32808 count=32 2>/dev/null | tr -d ' \0')
  [ "$label" = cidata ] || [ "$label" = CIDATA ] || continue
  if mount -t iso9660 -o ro "$d" /mnt/cidata 2>/dev/null; then found=$d; break; fi
done
if [ -z "$found" ]; then echo "cloud-init: no cidata volume"; exit 0; fi
for f in meta-data user-data network-config vendor-data; do
  [ -f /mnt/cidata/$f ] && cp /mnt/cidata/$f /var/lib/cloud/$f
done
umount /mnt/cidata
echo "cloud-init: NoCloud data from $found"
md=/var/lib/cloud/meta-data
if [ -f $md ]; then
  # KubeVirt writes meta-data as one line of JSON; YAML (`local-hostname: x`) works too.
  h=$(sed -n 's/.*"local-hostname"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' $md | head -n1)
  [ -n "$h" ] || h=$(sed -n 's/^[[:space:]]*local-hostname[[:space:]]*:[[:space:]]*\([^[:space:]]*\).*/\1/p' $md | head -n1)
  if [ -n "$h" ]; then
    echo "$h" >/etc/hostname
    hostname "$h"
    echo "cloud-init: hostname $h"
  fi
fi
ud=/var/lib/cloud/user-data
if [ -f $ud ] && [ "$(head -c2 $ud)" = '#!' ]; then
  chmod 700 $ud
  echo "cloud-init: running user-data, output in /var/log/user-data.log"
  $ud >/var/log/user-data.log 2>&1 &
fi
EOF

  cat >"$r/etc/init.d/www" <<'EOF'
#!/bin/sh
h=$(hostname)
printf '<html><head><title>%s</title></head><body><h1>%s</h1><p>oxivirt test guest</p></body></html>\n' "$h" "$h" >/var/www/index.html
EOF

  cat >"$r/etc/init.d/rcK" <<'EOF'
#!/bin/sh
echo "oxivirt test guest: shutting down"
killall udhcpc dhcpcd httpd acpid 2>/dev/null
sync
EOF

  cat >"$r/etc/udhcpc.script" <<'EOF'
#!/bin/sh
# udhcpc's hook: apply the lease (address, default route with a per-NIC metric, DNS).
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface" scope global
    ;;
  bound|renew)
    eval "$(ipcalc -p "$ip" "$subnet")"
    ip -4 addr flush dev "$interface" scope global
    ip addr add "$ip/$PREFIX" ${broadcast:+broadcast "$broadcast"} dev "$interface"
    metric=$((100 + $(cat /sys/class/net/$interface/ifindex)))
    for r in $router; do
      ip route replace default via "$r" dev "$interface" metric "$metric"
      break
    done
    : >/run/resolv.$interface
    [ -n "$domain" ] && echo "search $domain" >>/run/resolv.$interface
    for s in $dns; do echo "nameserver $s" >>/run/resolv.$interface; done
    cat /run/resolv.* >/etc/resolv.conf 2>/dev/null
    echo "udhcpc: $interface $1 $ip/$PREFIX router ${router:-none}"
    ;;
esac
exit 0
EOF

  cat >"$r/etc/dhcpcd.conf" <<'EOF'
# IPv6 only (udhcpc does v4): solicit RAs, take the DHCPv6 address (IA_NA) they point at.
ipv6only
ipv6rs
ia_na
option domain_name_servers
script /etc/dhcpcd.script
EOF
  cat >"$r/etc/dhcpcd.script" <<'EOF'
#!/bin/sh
case "$reason" in
  BOUND6|REBIND6|RENEW6|ROUTERADVERT) echo "dhcpcd: $interface $reason ${new_dhcp6_ia_na1_ia_addr1:-}" >/dev/console ;;
esac
exit 0
EOF
  chmod 755 "$r"/etc/init.d/* "$r/etc/udhcpc.script" "$r/etc/dhcpcd.script"
}

build_initramfs() {
  # Owned by root whatever the builder's files say; sorted so the archive is reproducible.
  (cd "$rootfs" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) \
    | lz4 -l -9 -q >"$out/initramfs.cpio.lz4" # -l: the legacy frame the kernel reads
}

# ---- disk: MBR + one FAT16 partition with SYSLINUX, the kernel and the initramfs --------------
# No loop devices: every tool works on the image file at the partition's offset.
part_start=2048   # sectors
part_kib=24576    # 24 MiB: room for kernel + initramfs with margin
build_disk() {
  local img=$out/disk.img off=$((part_start * 512)) mb=/usr/lib/syslinux/mbr/mbr.bin
  say "disk: $img (MBR, FAT16 at sector $part_start, syslinux)"
  truncate -s $(((part_start * 512) + part_kib * 1024)) "$img"
  printf 'label: dos\nstart=%d, type=e, bootable\n' "$part_start" | sfdisk -q --no-reread --no-tell-kernel "$img"
  dd if="$mb" of="$img" bs=440 count=1 conv=notrunc status=none
  mkfs.vfat -F 16 -n OXIGUEST -h "$part_start" --offset "$part_start" "$img" "$part_kib" >/dev/null
  syslinux --install --offset "$off" "$img"
  cat >"$work/syslinux.cfg" <<'EOF'
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL /bzImage
  INITRD /initrd.lz4
  APPEND console=ttyS0,115200 loglevel=4
EOF
  MTOOLS_SKIP_CHECK=1 mcopy -o -i "$img@@$off" "$work/syslinux.cfg" ::/syslinux.cfg
  MTOOLS_SKIP_CHECK=1 mcopy -o -i "$img@@$off" "$out/bzImage" ::/bzImage
  MTOOLS_SKIP_CHECK=1 mcopy -o -i "$img@@$off" "$out/initramfs.cpio.lz4" ::/initrd.lz4
  if command -v qemu-img >/dev/null; then
    qemu-img convert -c -f raw -O qcow2 "$img" "$out/disk.qcow2"
  fi
}

# ---- containerDisk: OCI image layout with one layer holding disk/guest.img (107:107) ---------
build_oci() {
  say "oci: $out/oci"
  python3 - "$out/disk.img" "$out/oci" <<'EOF'
import gzip, hashlib, io, json, os, sys, tarfile

disk, layout = sys.argv[1], sys.argv[2]
blobs = os.path.join(layout, "blobs", "sha256")
os.makedirs(blobs)

def put(data, media_type, **extra):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(data)
    return dict(mediaType=media_type, digest="sha256:" + digest, size=len(data), **extra)

def canon(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()

# KubeVirt's containerDisk convention: the image under /disk, owned by qemu (107:107).
raw = io.BytesIO()
with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
    d = tarfile.TarInfo("disk")
    d.type, d.mode, d.uid, d.gid, d.mtime = tarfile.DIRTYPE, 0o555, 107, 107, 0
    tar.addfile(d)
    t = tar.gettarinfo(disk, arcname="disk/guest.img")
    t.mode, t.uid, t.gid, t.uname, t.gname, t.mtime = 0o440, 107, 107, "", "", 0
    with open(disk, "rb") as f:
        tar.addfile(t, f)
tar_bytes = raw.getvalue()
gz = io.BytesIO()
with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0) as g:
    g.write(tar_bytes)
layer = put(gz.getvalue(), "application/vnd.oci.image.layer.v1.tar+gzip")

config = put(canon({
    "architecture": "amd64", "os": "linux",
    "config": {},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()]},
}), "application/vnd.oci.image.config.v1+json")
manifest = put(canon({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": config, "layers": [layer],
}), "application/vnd.oci.image.manifest.v1+json",
    platform={"architecture": "amd64", "os": "linux"})
# A manifest list (one platform) as KubeVirt's published images are, so pullers exercise
# the list -> linux/amd64 step; index.json names it "latest".
image_index = put(canon({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [manifest],
}), "application/vnd.oci.image.index.v1+json",
    annotations={"org.opencontainers.image.ref.name": "latest"})
with open(os.path.join(layout, "index.json"), "wb") as f:
    f.write(canon({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                   "manifests": [image_index]}))
with open(os.path.join(layout, "oci-layout"), "wb") as f:
    f.write(canon({"imageLayoutVersion": "1.0.0"}))
EOF
}

t0=$SECONDS
out=$work/out
mkdir -p "$out"
cp "$kdir/bzImage" "$kdir/config" "$out/"
build_rootfs
build_initramfs
build_disk
build_oci
mv "$out" "$gdir"
say "built $gdir in $((SECONDS - t0)) s (initramfs $(stat -c %s "$gdir/initramfs.cpio.lz4") bytes)"
echo "$gdir/oci"
exit 0
}
