#!/bin/sh
# The ctrfs demo (make demo, as root): a busybox image built on the spot as an OCI layout
# (umoci), imported into a ctrfs loop device, mounted as a writable clone, a command run in
# it, the change committed as a new image, exported as OCI and unpacked by umoci, fsck.
set -eu

BIN=${CTRFS_BIN:-.venv/bin}
WORK=${DEMO_DIR:-/tmp/ctrfs-demo}
IMG=$WORK/ctrfs.img
ROOTFS=$WORK/rootfs
MNT=$WORK/mnt
LAYOUT=$WORK/oci
OUT=$WORK/exported
DEV=

step() { printf '\n==> %s\n' "$*"; }

cleanup() {
    if mountpoint -q "$MNT" 2>/dev/null; then
        umount "$MNT" 2>/dev/null || umount -l "$MNT" || true
    fi
    if [ -n "$DEV" ]; then
        losetup -d "$DEV" 2>/dev/null || true
        DEV=
    fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (loop devices, mount, chroot)" >&2; exit 1; }
[ -x /bin/busybox ] || { echo "demo.sh: /bin/busybox missing (apt-get install busybox-static)" >&2; exit 1; }

step "busybox root file system in $ROOTFS"
mkdir -p "$WORK" "$MNT"
rm -rf "$ROOTFS"
mkdir -p "$ROOTFS/bin" "$ROOTFS/sbin" "$ROOTFS/usr/bin" "$ROOTFS/usr/sbin" "$ROOTFS/etc" \
         "$ROOTFS/root" "$ROOTFS/tmp" "$ROOTFS/proc" "$ROOTFS/dev"
chmod 1777 "$ROOTFS/tmp"
cp /bin/busybox "$ROOTFS/bin/busybox"
chroot "$ROOTFS" /bin/busybox --install -s
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$ROOTFS/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$ROOTFS/etc/group"
echo "$(ls "$ROOTFS/bin" | wc -l) entries in /bin"

step "an OCI image of it, made by umoci: $LAYOUT:busybox"
rm -rf "$LAYOUT" "$WORK/bundle" "$WORK/unpacked" "$OUT"
umoci init --layout "$LAYOUT"
umoci new --image "$LAYOUT:busybox"
umoci unpack --image "$LAYOUT:busybox" "$WORK/bundle" >/dev/null
cp -a "$ROOTFS/." "$WORK/bundle/rootfs/"
umoci repack --image "$LAYOUT:busybox" "$WORK/bundle"
rm -rf "$WORK/bundle"

step "256 MiB loop file $IMG on a loop device"
rm -f "$IMG"
truncate -s 256M "$IMG"
DEV=$(losetup -f --show "$IMG")
echo "$DEV"

step "mkfs.ctrfs $DEV"
"$BIN/mkfs.ctrfs" -L demo "$DEV"

step "ctrfs import $DEV oci:$LAYOUT:busybox --name busybox:1"
"$BIN/ctrfs" import "$DEV" "oci:$LAYOUT:busybox" --name busybox:1

step "mount -t ctrfs $DEV $MNT -o image=busybox:1   (a writable clone of the image)"
mount -t ctrfs "$DEV" "$MNT" -o image=busybox:1
mountpoint -q "$MNT" || { echo "demo.sh: $MNT is not mounted" >&2; exit 1; }

step "run a container command in it, and write"
chroot "$MNT" /bin/sh -c 'echo hello from ctrfs; ls -l /bin/busybox /etc/passwd'
chroot "$MNT" /bin/sh -c 'echo "written inside the container" > /root/hello.txt; cat /root/hello.txt'

step "ctrfs commit $MNT busybox:2   (the change becomes a layer over busybox:1)"
"$BIN/ctrfs" commit "$MNT" busybox:2

step "umount $MNT"
umount "$MNT"      # returns after the daemon's last checkpoint (umount.fuse.ctrfs)

step "ctrfs export $DEV busybox:2 $OUT --format oci, then umoci unpack"
"$BIN/ctrfs" export --format oci "$DEV" busybox:2 "$OUT"
umoci unpack --image "$OUT:2" "$WORK/unpacked" >/dev/null
echo "unpacked /root/hello.txt: $(cat "$WORK/unpacked/rootfs/root/hello.txt")"
ls -l "$WORK/unpacked/rootfs/bin/busybox" "$WORK/unpacked/rootfs/etc/passwd"

step "fsck.ctrfs -f $DEV"
"$BIN/fsck.ctrfs" -f "$DEV"

step "ctrfs images $DEV; ctrfs df $DEV"
"$BIN/ctrfs" images "$DEV"
"$BIN/ctrfs" df "$DEV"
