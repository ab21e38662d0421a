#!/usr/bin/env bash
# Assembles Kiln's Linux guest from Debian packages:
#   OUTDIR/vmlinuz            the bzImage of linux-image-cloud-amd64's kernel
#   OUTDIR/vmlinux            the uncompressed ELF inside it (PVH entry note checked)
#   OUTDIR/initramfs.cpio.gz  busybox-static, the virtio modules and their dependencies,
#                             /init (guest-images/linux/init) and /bin/kiln-exit
#   OUTDIR/inputs.txt         what the outputs were built from (the cache key)
# Usage: build.sh OUTDIR
# Environment: KILN_LINUX_KERNEL_PACKAGE=linux-image-6.1.0-NN-cloud-amd64 pins a kernel
# package instead of the one linux-image-cloud-amd64 depends on.
# Cached: when OUTDIR holds all outputs and inputs.txt matches the packages apt would
# pick now and this recipe's files, nothing is downloaded or rebuilt. Downloads are kept
# in OUTDIR/work/debs. Needs apt-get, dpkg-deb, lz4, cpio, gzip, readelf and gcc;
# installs lz4, cpio and binutils with apt-get when run as root and they are missing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log() { echo "linux-guest: $*" >&2; }
die() { echo "linux-guest: error: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 OUTDIR"
mkdir -p "$1"
out=$(cd "$1" && pwd)
work=$out/work
mkdir -p "$work"

# One build at a time per OUTDIR (tests may call this in parallel).
exec 9>"$out/.lock"
flock 9

modules=(virtio virtio_ring virtio_mmio virtio_blk virtio_net)
outputs=(vmlinuz vmlinux initramfs.cpio.gz)

# --- tools -----------------------------------------------------------------------------
need_pkgs=()
for pair in lz4:lz4 cpio:cpio readelf:binutils gcc:gcc dpkg-deb:dpkg apt-get:apt flock:util-linux gzip:gzip; do
    command -v "${pair%%:*}" >/dev/null || need_pkgs+=("${pair#*:}")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing tools; install: apt-get install ${need_pkgs[*]}"
    log "installing ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# --- what to build from ----------------------------------------------------------------
# The cache key needs one apt-cache call (about a second: this machine's apt keeps no
# binary cache): the candidate versions of the kernel (meta)package and busybox-static.
# Which linux-image-6.1.0-NN-cloud-amd64 the metapackage depends on is looked up only
# when building.
kernel_meta=${KILN_LINUX_KERNEL_PACKAGE:-linux-image-cloud-amd64}
resolve_key() {
    local policy
    policy=$(apt-cache policy "$kernel_meta" busybox-static 2>/dev/null |
        awk '/^[^ ].*:$/ { pkg = substr($1, 1, length($1) - 1) } /Candidate:/ { print pkg "=" $2 }')
    meta_ver=$(grep "^$kernel_meta=" <<<"$policy" | cut -d= -f2-)
    busybox_ver=$(grep "^busybox-static=" <<<"$policy" | cut -d= -f2-)
    [ -n "$meta_ver" ] && [ "$meta_ver" != "(none)" ] && [ -n "$busybox_ver" ] && [ "$busybox_ver" != "(none)" ]
}
recipe_hash=$(cat "$here/build.sh" "$here/init" "$here/kiln-exit.c" | sha256sum | cut -d' ' -f1)

have_outputs() { for f in "${outputs[@]}" inputs.txt; do [ -s "$out/$f" ] || return 1; done; }

if ! resolve_key; then
    if have_outputs && grep -qx "recipe=$recipe_hash" "$out/inputs.txt"; then
        log "apt cannot resolve the packages (no package lists?); keeping the cached guest in $out"
        exit 0
    fi
    [ "$(id -u)" = 0 ] || die "apt cannot resolve $kernel_meta / busybox-static; run 'apt-get update' as root"
    log "apt-get update"
    apt-get update -qq
    resolve_key || die "apt has no candidate for $kernel_meta or busybox-static"
fi

inputs="kernel=$kernel_meta=$meta_ver
busybox=busybox-static=$busybox_ver
modules=${modules[*]}
recipe=$recipe_hash"

if have_outputs && [ "$(cat "$out/inputs.txt")" = "$inputs" ]; then
    log "up to date ($kernel_meta $meta_ver) in $out"
    exit 0
fi

if [ "$kernel_meta" = linux-image-cloud-amd64 ]; then
    kernel_pkg=$(apt-cache depends "$kernel_meta" 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
    [ -n "$kernel_pkg" ] || die "cannot resolve $kernel_meta to a linux-image-*-cloud-amd64 package"
    kernel_ver=$(apt-cache policy "$kernel_pkg" | awk '/Candidate:/ { print $2 }')
else
    kernel_pkg=$kernel_meta kernel_ver=$meta_ver
fi

# --- download (kept per version) -------------------------------------------------------
fetch() { # PACKAGE VERSION -> prints the .deb path
    local dir="$work/debs/$1_$2"
    if ! compgen -G "$dir/*.deb" >/dev/null; then
        log "downloading $1 $2"
        rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
        if ! (cd "$dir.tmp" && apt-get download -qq "$1=$2") >"$work/apt.log" 2>&1; then
            grep -v '^W: Download is performed unsandboxed' "$work/apt.log" >&2
            die "apt-get download $1=$2 failed"
        fi
        compgen -G "$dir.tmp/*.deb" >/dev/null || die "apt-get download $1=$2 produced no .deb"
        rm -rf "$dir" && mv "$dir.tmp" "$dir"
    fi
    compgen -G "$dir/*.deb" | head -n1
}
kernel_deb=$(fetch "$kernel_pkg" "$kernel_ver")
busybox_deb=$(fetch busybox-static "$busybox_ver")

# --- extract ---------------------------------------------------------------------------
stage=$work/stage
rm -rf "$stage" && mkdir -p "$stage"
dpkg-deb -x "$kernel_deb" "$stage/kernel"
dpkg-deb -x "$busybox_deb" "$stage/busybox"
busybox=$stage/busybox/bin/busybox
[ -x "$busybox" ] || die "no bin/busybox in $busybox_deb"

kdir=$(compgen -G "$stage/kernel/lib/modules/*" | head -n1) || die "no lib/modules in $kernel_deb"
kver=${kdir##*/}
vmlinuz=$stage/kernel/boot/vmlinuz-$kver
[ -f "$vmlinuz" ] || die "no boot/vmlinuz-$kver in $kernel_deb"
log "kernel $kver"

# --- vmlinux: the LZ4 payload of the bzImage -------------------------------------------
# The kernel is compressed as an LZ4 legacy frame (magic 0x184C2102, bytes 02 21 4C 18).
# lz4 reads the frame, then complains about the bytes after it: its status is ignored
# and the result is accepted only if it is an ELF with the PVH entry note.
has_pvh_note() { # Xen note type 18 = XEN_ELFNOTE_PHYS32_ENTRY
    readelf -n "$1" 2>/dev/null | grep -Eq '^ *Xen +0x[0-9a-f]+[[:space:]]+(.*PHYS32_ENTRY|Unknown note type: \(0x00000012\))'
}
vmlinux=$stage/vmlinux
found=0
for off in $(LC_ALL=C grep -obUaP '\x02\x21\x4c\x18' "$vmlinuz" | cut -d: -f1); do
    tail -c "+$((off + 1))" "$vmlinuz" | lz4 -dcq >"$vmlinux" 2>/dev/null || true
    if [ "$(head -c4 "$vmlinux" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
        found=1
        break
    fi
done
[ "$found" = 1 ] || die "no LZ4-compressed ELF found in $vmlinuz"
has_pvh_note "$vmlinux" || die "$vmlinux has no Xen PHYS32_ENTRY (PVH) note"

# --- initramfs -------------------------------------------------------------------------
root=$stage/initramfs
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,root,etc}
cp "$busybox" "$root/bin/busybox"
"$busybox" --list-full | while read -r applet; do
    [ "$applet" = bin/busybox ] && continue
    mkdir -p "$root/$(dirname "$applet")"
    ln -sf /bin/busybox "$root/$applet"
done
install -m 0755 "$here/init" "$root/init"
gcc -Os -static -nostdlib -ffreestanding -fno-stack-protector -fno-pie -no-pie \
    -fno-asynchronous-unwind-tables -Wall -Wextra -Werror \
    -o "$root/bin/kiln-exit" "$here/kiln-exit.c"
# /dev/console for the kernel's first open; only root can make it (init copes without).
mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true

# modules.dep is made by depmod at install time, so the package lacks it: busybox's
# depmod writes it. Each module's dependencies are loaded before it (depth first).
"$busybox" depmod -b "$stage/kernel" "$kver"
depfile=$kdir/modules.dep
mroot=$root/lib/modules/$kver
mkdir -p "$mroot"
: >"$mroot/kiln-load-order"
: >"$mroot/modules.dep"
declare -A done_mod=()
add_module() { # path relative to lib/modules/KVER
    local rel=$1 line dep
    [ -n "${done_mod[$rel]:-}" ] && return 0
    done_mod[$rel]=1
    line=$(grep -m1 "^$rel:" "$depfile") || die "$rel is not in modules.dep"
    for dep in ${line#*:}; do add_module "$dep"; done
    mkdir -p "$mroot/$(dirname "$rel")"
    cp "$kdir/$rel" "$mroot/$rel"
    echo "$rel" >>"$mroot/kiln-load-order"
    echo "$line" >>"$mroot/modules.dep"
}
for m in "${modules[@]}"; do
    rel=$(grep -Eo "^[^:]*/$m\.ko(\.[a-z]+)?:" "$depfile" | head -n1 | tr -d :) || true
    if [ -z "$rel" ]; then
        grep -Eq "/$m\.ko$" "$kdir/modules.builtin" && { log "$m is built in"; continue; }
        die "module $m is neither in $kver's modules nor built in"
    fi
    case "$rel" in *.ko) ;; *) die "compressed module $rel: busybox insmod needs plain .ko" ;; esac
    add_module "$rel"
done
cp "$kdir/modules.builtin" "$mroot/" 2>/dev/null || true
log "modules: $(tr '\n' ' ' <"$mroot/kiln-load-order")"

(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) |
    gzip -9n >"$stage/initramfs.cpio.gz"

# --- publish ---------------------------------------------------------------------------
rm -f "$out/inputs.txt"
cp "$vmlinuz" "$out/vmlinuz.tmp" && mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$vmlinux" "$out/vmlinux"
mv "$stage/initramfs.cpio.gz" "$out/initramfs.cpio.gz"
printf '%s\n' "$inputs" >"$out/inputs.txt"
rm -rf "$stage"
log "built $kernel_pkg $kernel_ver: $out/{vmlinuz,vmlinux,initramfs.cpio.gz}"
