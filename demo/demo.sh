#!/bin/sh
# The ctrfs demo (make demo, as root): a busybox root file system on a ctrfs loop device,
# run through a FUSE mount, committed as an image, then checked by fsck and listed.
set -eu

BIN=${CTRFS_BIN:-.venv/bin}
WORK=${DEMO_DIR:-/tmp/ctrfs-demo}
IMG=$WORK/ctrfs.img
ROOTFS=$WORK/rootfs
MNT=$WORK/mnt
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

step "256 MiB loop file $IMG on a loop device"
rm -f "$IMG"
truncate -s 256M "$IMG"
DEV=$(losetup -f --show "$IMG")
echo "$DEV"

step "mkfs.ctrfs $DEV"
"$BIN/mkfs.ctrfs" -L demo "$DEV"

step "mount.ctrfs $DEV $MNT"
"$BIN/mount.ctrfs" "$DEV" "$MNT"
mountpoint -q "$MNT" || { echo "demo.sh: $MNT is not mounted" >&2; exit 1; }

step "copy the root file system in and run it"
cp -a "$ROOTFS/." "$MNT/"
chroot "$MNT" /bin/sh -c 'echo hello from ctrfs; ls /bin | wc -l'
chroot "$MNT" /bin/sh -c 'echo "written inside the container" > /root/hello.txt; cat /root/hello.txt'

step "ctrfs commit $MNT busybox:demo"
"$BIN/ctrfs" commit "$MNT" busybox:demo

step "umount $MNT"
umount "$MNT"      # returns after the daemon's last checkpoint (umount.fuse.ctrfs)

step "fsck.ctrfs -f $DEV"
"$BIN/fsck.ctrfs" -f "$DEV"

step "ctrfs images $DEV"
"$BIN/ctrfs" images "$DEV"
