#!/usr/bin/env bash
# Builds the Gavel device image from Debian packages (see images/README.md).
#
#   images/build.sh --agent PATH [--out DIR] [--profile NAME] [--version X.Y.Z]
#                   [--variant good|unhealthy|noboot] [--pki DIR] [--disk] [--bundle]
#
# Stages (each cached by the hash of what it is made from):
#   base    debootstrap of images/packages.txt + initramfs, cleaned    $CACHE/base-<key>/
#   rootfs  base + images/rootfs/ + agent + profiles + RAUC config     squashfs, read-only slot
#   disk    GPT: ESP (GRUB + grubenv), rootfs-a (the rootfs), rootfs-b (empty),
#           config (FAT, provisioning), data (ext4, writable state)     <name>.img
#   bundle  RAUC bundle (verity) holding the rootfs for the other slot  <name>.raucb
# Needs root (debootstrap, chroot), debootstrap, mksquashfs, sgdisk, mkfs.vfat, mtools,
# mkfs.ext4, grub-mkstandalone (grub-efi-amd64-bin), rauc, openssl.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${GAVEL_IMAGE_CACHE:-/var/cache/gavel/image}"
MIRROR="${GAVEL_IMAGE_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
OUT="$CACHE/out"
PROFILE=courtroom-terminal
VERSION=""
VARIANT=good
PKI=""
AGENT=""
WANT_DISK=0
WANT_BUNDLE=0
# Sizes (MiB). A slot holds one rootfs squashfs; the data partition is grown on real
# hardware by the flashing step (see README).
ESP_MB=64
SLOT_MB=1024
CONFIG_MB=16
DATA_MB=1536

say() { printf '[image] %s\n' "$*" >&2; }
die() { printf '[image] error: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT="$2"; shift 2 ;;
        --agent) AGENT="$2"; shift 2 ;;
        --profile) PROFILE="$2"; shift 2 ;;
        --version) VERSION="$2"; shift 2 ;;
        --variant) VARIANT="$2"; shift 2 ;;
        --pki) PKI="$2"; shift 2 ;;
        --disk) WANT_DISK=1; shift ;;
        --bundle) WANT_BUNDLE=1; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done

[ "$(id -u)" = 0 ] || die "needs root (debootstrap and chroot)"
[ -n "$AGENT" ] || die "--agent PATH (the gavel-agent binary) is required"
[ -x "$AGENT" ] || die "--agent $AGENT is not an executable file"
repo="$(cd "$here/.." && pwd)"
[ -f "$repo/device-profiles/$PROFILE.toml" ] || die "no device profile '$PROFILE' (device-profiles/$PROFILE.toml)"
case "$VARIANT" in good|unhealthy|noboot) ;; *) die "--variant must be good, unhealthy or noboot, not '$VARIANT'" ;; esac
if [ -z "$VERSION" ]; then
    VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -n1)"
fi
[[ "$VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "--version must be MAJOR.MINOR.PATCH, not '$VERSION'"
[ "$WANT_DISK$WANT_BUNDLE" != 00 ] || WANT_DISK=1
for t in debootstrap mksquashfs sgdisk mkfs.vfat mcopy mkfs.ext4 grub-mkstandalone rauc openssl; do
    command -v "$t" >/dev/null || die "needs '$t' (cargo xtask setup installs the image tools)"
done
[ -d /usr/lib/grub/x86_64-efi ] || die "needs grub-efi-amd64-bin (/usr/lib/grub/x86_64-efi)"

# Every timestamp in the image: SOURCE_DATE_EPOCH, else the last commit's time.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH="$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 1700000000)"
fi
export SOURCE_DATE_EPOCH
mkdir -p "$CACHE" "$OUT"
OUT="$(cd "$OUT" && pwd)"

hash_of() { sha256sum | cut -c1-16; }

# ---------------------------------------------------------------- base (debootstrap)
packages="$(grep -v '^\s*#' "$here/packages.txt" | grep -v '^\s*$' | tr '\n' ',' | sed 's/,$//')"
base_key="$( { echo "$SUITE $MIRROR"; echo "$packages"; sed -n '/^# BASE-BEGIN/,/^# BASE-END/p' "$0"; } | hash_of)"
BASE="$CACHE/base-$base_key"
# BASE-BEGIN (the base cache key covers this block)
build_base() {
    local tmp="$BASE.tmp" log="$CACHE/debootstrap.log"
    rm -rf "$tmp"
    mkdir -p "$CACHE/debs"
    say "debootstrap $SUITE from $MIRROR into $tmp (cold build: several minutes; log $log)"
    debootstrap --variant=minbase --cache-dir="$CACHE/debs" "$SUITE" "$tmp" "$MIRROR" >"$log" 2>&1 \
        || die "debootstrap failed; see $log and $tmp/debootstrap/debootstrap.log"
    # The package list through apt in the chroot (debootstrap's own resolver does not
    # handle alternatives such as dbus-session-bus). Nothing starts in the chroot.
    mount --bind /proc "$tmp/proc"
    mount --bind /sys "$tmp/sys"
    mount --bind /dev "$tmp/dev"
    mount --bind "$CACHE/debs" "$tmp/var/cache/apt/archives"
    trap 'umount -l "$BASE.tmp/var/cache/apt/archives" "$BASE.tmp/dev" "$BASE.tmp/sys" "$BASE.tmp/proc" 2>/dev/null || true' EXIT
    printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
    chmod 0755 "$tmp/usr/sbin/policy-rc.d"
    # The root filesystem is squashfs: the initramfs must be able to mount it.
    mkdir -p "$tmp/usr/share/initramfs-tools/modules.d"
    printf 'squashfs\nvirtio_blk\nvirtio_pci\n' >"$tmp/usr/share/initramfs-tools/modules.d/gavel"
    echo "deb $MIRROR $SUITE main" >"$tmp/etc/apt/sources.list"
    say "apt-get install $(echo "$packages" | tr ',' ' ' | wc -w) packages in the chroot"
    chroot "$tmp" apt-get update >>"$log" 2>&1 || die "apt-get update in the chroot failed; see $log"
    # shellcheck disable=SC2046
    DEBIAN_FRONTEND=noninteractive chroot "$tmp" apt-get install -y --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        $(echo "$packages" | tr ',' ' ') >>"$log" 2>&1 || die "apt-get install in the chroot failed; see $log"
    umount -l "$tmp/var/cache/apt/archives" "$tmp/dev" "$tmp/sys" "$tmp/proc"
    trap - EXIT
    rm -f "$tmp/usr/sbin/policy-rc.d"
    local kver
    kver="$(basename "$(ls "$tmp"/boot/vmlinuz-* | sort | tail -n1)" | sed 's/^vmlinuz-//')"
    ln -sfn "vmlinuz-$kver" "$tmp/boot/vmlinuz"
    ln -sfn "initrd.img-$kver" "$tmp/boot/initrd.img"
    # What would differ between two builds and is not needed at run time.
    rm -rf "$tmp"/var/lib/apt/lists/* "$tmp"/var/cache/apt/*.bin "$tmp"/var/cache/ldconfig/aux-cache
    find "$tmp/var/log" -type f -delete
    rm -f "$tmp"/var/lib/dpkg/*-old "$tmp"/var/cache/debconf/*-old "$tmp/etc/hostname"
    : >"$tmp/etc/machine-id"
    rm -f "$tmp/var/lib/dbus/machine-id"
    ln -s /etc/machine-id "$tmp/var/lib/dbus/machine-id"
    touch "$tmp/.gavel-base-done"
    mv "$tmp" "$BASE"
}
# BASE-END
if [ ! -f "$BASE/.gavel-base-done" ]; then
    build_base
else
    say "base $base_key cached ($BASE)"
fi

# ---------------------------------------------------------------- PKI (test-only default)
if [ -z "$PKI" ]; then PKI="$OUT/pki"; fi
if [ ! -f "$PKI/ca.cert.pem" ]; then
    say "no PKI in $PKI: making a TEST-ONLY one (CA + release signer); use your own for devices"
    mkdir -p "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/O=Gavel TEST-ONLY/CN=gavel-test-ca" \
        -keyout "$PKI/ca.key.pem" -out "$PKI/ca.cert.pem" -addext basicConstraints=critical,CA:true \
        -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/O=Gavel TEST-ONLY/CN=gavel-test-release" \
        -keyout "$PKI/release.key.pem" -out "$PKI/release.csr.pem" 2>/dev/null
    printf 'basicConstraints=CA:false\nkeyUsage=critical,digitalSignature\n' >"$PKI/release.ext"
    openssl x509 -req -in "$PKI/release.csr.pem" -CA "$PKI/ca.cert.pem" -CAkey "$PKI/ca.key.pem" \
        -CAcreateserial -days 3650 -extfile "$PKI/release.ext" -out "$PKI/release.cert.pem" 2>/dev/null
fi
for f in ca.cert.pem release.cert.pem release.key.pem; do
    [ -f "$PKI/$f" ] || die "PKI folder $PKI lacks $f"
done

# ---------------------------------------------------------------- rootfs
name="gavel-$PROFILE-$VERSION"
[ "$VARIANT" = good ] || name="$name-$VARIANT"
# The whisper model the profile transcribes with ships in the image (models/cache/ after
# `cargo xtask models`); without it the device's transcription would report itself failed.
MODEL=""
model_name="$(sed -n '/^\[capabilities\.transcribe\]/,/^\[/s/^model *= *"\(.*\)"/\1/p' \
    "$repo/device-profiles/$PROFILE.toml" | head -n1)"
if [ -n "$model_name" ]; then
    MODEL="$repo/models/cache/whisper/ggml-${model_name#whisper-}.bin"
    [ -f "$MODEL" ] || die "profile $PROFILE transcribes with $model_name: no $MODEL (run cargo xtask models)"
fi
root_key="$( {
    echo "$base_key $PROFILE $VERSION $VARIANT $SOURCE_DATE_EPOCH"
    sha256sum "$AGENT" "$PKI/ca.cert.pem" "$repo"/device-profiles/*.toml \
        "$repo"/device-profiles/vocabulary/*.toml ${MODEL:+"$MODEL"} | cut -d' ' -f1
    (cd "$here" && find rootfs grub -type f -o -type l | LC_ALL=C sort | xargs sha256sum)
    sed -n '/^# ROOTFS-BEGIN/,/^# ROOTFS-END/p' "$0"
} | hash_of)"
SQUASH="$OUT/$name.rootfs.squashfs"
# ROOTFS-BEGIN (the rootfs key covers this block)
build_rootfs() {
    local root="$OUT/.rootfs-$name"
    rm -rf "$root"
    say "rootfs $name: base + agent + configuration"
    cp -a "$BASE" "$root"
    rm -f "$root/.gavel-base-done"
    # Not needed on a device: translations, documentation, manual pages.
    rm -rf "$root"/usr/share/locale/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
    cp -R --preserve=mode "$here/rootfs/." "$root/"
    # Mount points must exist in the read-only image (fstab).
    mkdir -p "$root/boot/efi" "$root/var/lib/gavel" "$root/var/lib/private" "$root/var/lib/systemd"
    chmod 0700 "$root/var/lib/private"
    # Stripped: a debug build carries hundreds of MB of debug information.
    install -D -m 0755 "$AGENT" "$root/usr/bin/gavel-agent"
    strip --strip-debug "$root/usr/bin/gavel-agent"
    mkdir -p "$root/usr/share/gavel/device-profiles"
    install -m 0644 "$repo"/device-profiles/*.toml "$root/usr/share/gavel/device-profiles/"
    install -D -m 0644 -t "$root/usr/share/gavel/device-profiles/vocabulary" \
        "$repo"/device-profiles/vocabulary/*.toml
    if [ -n "$MODEL" ]; then
        install -D -m 0644 "$MODEL" "$root/usr/share/gavel/models/whisper/$(basename "$MODEL")"
    fi
    install -D -m 0644 "$PKI/ca.cert.pem" "$root/etc/rauc/ca.cert.pem"
    sed -e "s/@COMPATIBLE@/gavel-$PROFILE/" "$here/system.conf.in" >"$root/etc/rauc/system.conf"
    echo gavel >"$root/etc/hostname"
    cat >"$root/etc/gavel/image-release" <<REL
GAVEL_IMAGE_VERSION=$VERSION
GAVEL_IMAGE_PROFILE=$PROFILE
GAVEL_IMAGE_VARIANT=$VARIANT
REL
    case "$VARIANT" in
        unhealthy)
            # Deliberately broken for the rollback test: the agent is pointed at a broker
            # port nothing listens on, so it never passes its health gate.
            echo "GAVEL_BROKER=127.0.0.1:9" >>"$root/etc/gavel/agent.env" ;;
        noboot)
            # Deliberately broken: no init, so the kernel never reaches user space.
            rm -f "$root/usr/sbin/init" "$root/sbin/init" ;;
    esac
    chroot "$root" systemctl enable gavel-agent.service gavel-provision.service systemd-networkd.service \
        systemd-resolved.service systemd-timesyncd.service >/dev/null 2>&1
    # rauc-mark-good would commit a slot before the health gate (the agent confirms);
    # package maintenance timers have nothing to do on a read-only root.
    chroot "$root" systemctl mask rauc-mark-good.service systemd-firstboot.service apt-daily.timer \
        apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer >/dev/null 2>&1 || true
    rm -f "$root/var/lib/systemd/catalog/database"
    say "mksquashfs $name (gzip level 1; GRUB reads the kernel from it)"
    env -u SOURCE_DATE_EPOCH mksquashfs "$root" "$SQUASH.tmp" -noappend -comp gzip -Xcompression-level 1 -processors 2 -no-progress -quiet \
        -mkfs-time "$SOURCE_DATE_EPOCH" -all-time "$SOURCE_DATE_EPOCH" >/dev/null
    mv "$SQUASH.tmp" "$SQUASH"
    rm -rf "$root"
}
# ROOTFS-END
if [ "$(cat "$SQUASH.key" 2>/dev/null)" != "$root_key" ] || [ ! -f "$SQUASH" ]; then
    build_rootfs
    echo "$root_key" >"$SQUASH.key"
else
    say "rootfs $name cached ($SQUASH)"
fi
sqsize=$(stat -c %s "$SQUASH")
[ "$sqsize" -le $((SLOT_MB * 1024 * 1024)) ] || die "rootfs ($sqsize bytes) does not fit a $SLOT_MB MiB slot"
sha256sum "$SQUASH" | cut -d' ' -f1 >"$SQUASH.sha256"
say "rootfs $name: $sqsize bytes, sha256 $(cat "$SQUASH.sha256")"

# ---------------------------------------------------------------- disk
build_disk() {
    local img="$OUT/$name.img" w="$OUT/.disk-$name"
    rm -rf "$w"; mkdir -p "$w"
    say "disk $img"
    # GRUB: a standalone EFI binary whose built-in config finds the ESP and runs its grub.cfg.
    grub-mkstandalone -O x86_64-efi -o "$w/BOOTX64.EFI" \
        --modules="part_gpt fat squash4 gzio loadenv linux search search_fs_file regexp test echo normal configfile sleep reboot efi_gop all_video" \
        --locales= --fonts= --themes= "boot/grub/grub.cfg=$here/grub/embedded.cfg"
    grub-editenv "$w/grubenv" create
    grub-editenv "$w/grubenv" set ORDER="A B" A_OK=1 A_TRY=0 B_OK=0 B_TRY=0
    # ESP (FAT32)
    truncate -s ${ESP_MB}M "$w/esp.img"
    mkfs.vfat -F 32 -n GAVEL-ESP -i 6761766c "$w/esp.img" >/dev/null
    touch -d "@$SOURCE_DATE_EPOCH" "$w/BOOTX64.EFI" "$w/grubenv" "$here/grub/grub.cfg" 2>/dev/null || true
    mmd -i "$w/esp.img" ::/EFI ::/EFI/BOOT
    mcopy -m -i "$w/esp.img" "$w/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
    cp "$here/grub/grub.cfg" "$w/grub.cfg"; touch -d "@$SOURCE_DATE_EPOCH" "$w/grub.cfg"
    mcopy -m -i "$w/esp.img" "$w/grub.cfg" ::/EFI/BOOT/gavel-grub.cfg
    mcopy -m -i "$w/esp.img" "$w/grubenv" ::/EFI/BOOT/grubenv
    # config partition (FAT: any computer can write the provisioning file)
    truncate -s ${CONFIG_MB}M "$w/config.img"
    mkfs.vfat -n GAVEL-CFG -i 67766366 "$w/config.img" >/dev/null
    # data partition (ext4): the agent's store, recordings, RAUC's slot status, the journal
    mkdir -p "$w/data/agent" "$w/data/rauc" "$w/data/journal"
    truncate -s ${DATA_MB}M "$w/data.img"
    mkfs.ext4 -q -L gavel-data -U 6761766c-0000-4000-8000-000000000005 \
        -E root_owner=0:0,hash_seed=6761766c-0000-4000-8000-0000000000ff -d "$w/data" "$w/data.img"
    # GPT
    local total=$((1 + ESP_MB + 2 * SLOT_MB + CONFIG_MB + DATA_MB + 1))
    rm -f "$img.tmp"; truncate -s ${total}M "$img.tmp"
    sgdisk -Z -U 6761766c-0000-4000-8000-000000000000 \
        -n 1:1M:+${ESP_MB}M  -t 1:ef00 -c 1:esp      -u 1:6761766c-0000-4000-8000-000000000001 \
        -n 2:0:+${SLOT_MB}M  -t 2:8304 -c 2:rootfs-a -u 2:6761766c-0000-4000-8000-000000000002 \
        -n 3:0:+${SLOT_MB}M  -t 3:8304 -c 3:rootfs-b -u 3:6761766c-0000-4000-8000-000000000003 \
        -n 4:0:+${CONFIG_MB}M -t 4:0700 -c 4:config  -u 4:6761766c-0000-4000-8000-000000000004 \
        -n 5:0:+${DATA_MB}M  -t 5:8300 -c 5:data     -u 5:6761766c-0000-4000-8000-000000000005 \
        "$img.tmp" >/dev/null
    local off=1
    put() { dd if="$1" of="$img.tmp" bs=1M seek="$2" conv=notrunc,sparse status=none; }
    put "$w/esp.img" $off;                   off=$((off + ESP_MB))
    put "$SQUASH" $off;                      off=$((off + 2 * SLOT_MB))
    put "$w/config.img" $off;                off=$((off + CONFIG_MB))
    put "$w/data.img" $off
    mv "$img.tmp" "$img"
    rm -rf "$w"
}
if [ "$WANT_DISK" = 1 ]; then
    disk_key="$( { echo "$root_key"; sha256sum "$here/grub/"* | cut -d' ' -f1; sed -n '/^build_disk/,/^}/p' "$0"; } | hash_of)"
    if [ "$(cat "$OUT/$name.img.key" 2>/dev/null)" != "$disk_key" ] || [ ! -f "$OUT/$name.img" ]; then
        build_disk
        echo "$disk_key" >"$OUT/$name.img.key"
    else
        say "disk $name.img cached"
    fi
    echo "$OUT/$name.img"
fi

# ---------------------------------------------------------------- bundle
build_bundle() {
    local b="$OUT/.bundle-$name"
    rm -rf "$b"; mkdir -p "$b"
    cp "$SQUASH" "$b/rootfs.img"
    cat >"$b/manifest.raucm" <<MAN
[update]
compatible=gavel-$PROFILE
version=$VERSION
description=Gavel $PROFILE image $VERSION ($VARIANT)

[bundle]
format=verity

[image.rootfs]
filename=rootfs.img
MAN
    rm -f "$OUT/$name.raucb"
    rauc bundle --cert="$PKI/release.cert.pem" --key="$PKI/release.key.pem" \
        --keyring="$PKI/ca.cert.pem" "$b" "$OUT/$name.raucb" >/dev/null
    rm -rf "$b"
}
if [ "$WANT_BUNDLE" = 1 ]; then
    bundle_key="$( { echo "$root_key"; sha256sum "$PKI/release.cert.pem" | cut -d' ' -f1; sed -n '/^build_bundle/,/^}/p' "$0"; } | hash_of)"
    if [ "$(cat "$OUT/$name.raucb.key" 2>/dev/null)" != "$bundle_key" ] || [ ! -f "$OUT/$name.raucb" ]; then
        say "bundle $name.raucb"
        build_bundle
        echo "$bundle_key" >"$OUT/$name.raucb.key"
    else
        say "bundle $name.raucb cached"
    fi
    echo "$OUT/$name.raucb"
fi
