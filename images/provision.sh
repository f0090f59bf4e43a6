#!/usr/bin/env bash
# Writes a device's provisioning files into the config partition (FAT, partition label
# `config`) of a Gavel disk image or a flashed disk, without mounting it:
#
#   images/provision.sh DISK gavel.toml [enroll.env]
#
# DISK is the image file or the block device (e.g. /dev/sdX after flashing). First boot
# copies gavel.toml to the data partition (and enrolls when enroll.env is given); see
# images/README.md.
set -euo pipefail
die() { printf '[provision] error: %s\n' "$*" >&2; exit 1; }
[ $# -ge 2 ] || die "usage: images/provision.sh DISK gavel.toml [enroll.env]"
disk="$1"; shift
[ -e "$disk" ] || die "no disk $disk"
start="$(sfdisk --dump "$disk" 2>/dev/null | sed -n 's/.*start= *\([0-9]*\),.*name="config".*/\1/p')"
[ -n "$start" ] || die "$disk has no partition labelled 'config' (not a Gavel image?)"
offset=$((start * 512))
for f in "$@"; do
    [ -f "$f" ] || die "no file $f"
    case "$(basename "$f")" in
        gavel.toml|enroll.env) ;;
        *) die "$f: the config partition takes gavel.toml and enroll.env only" ;;
    esac
    mcopy -o -i "$disk@@$offset" "$f" "::/$(basename "$f")"
done
mdir -b -i "$disk@@$offset" :: >&2
