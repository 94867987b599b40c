#!/usr/bin/env bash
# make demo: sendfs's main job on the bundled image test/testdata/demo.img.gz
# (a subvolume "home" with read-only snapshots snaps/home.1 and snaps/home.2).
# Without root it lists, sends and dumps; as root it also receives the
# streams into a scratch btrfs, checks the result against the snapshots, and
# reads the same streams through a FUSE mount.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/bin/sendfs
work=$(mktemp -d /tmp/sendfs-demo.XXXXXX)
mounts=() loops=() fusepid=
cleanup() {
	[ -n "$fusepid" ] && kill -TERM "$fusepid" 2>/dev/null && wait "$fusepid" 2>/dev/null || true
	for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
	for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
run() { printf '\n$ %s\n' "$*"; "$@"; }

gunzip -c test/testdata/demo.img.gz >"$work/demo.img"
img=$work/demo.img
cd "$work"
run "$bin" list demo.img
run "$bin" send --size demo.img snaps/home.1
run "$bin" send -f full.stream demo.img snaps/home.1
run "$bin" send -f incr.stream -p snaps/home.1 demo.img snaps/home.2
run ls -l full.stream incr.stream
printf '\n$ btrfs receive --dump -f incr.stream\n'
btrfs receive --dump -f incr.stream
run "$bin" diff -p snaps/home.1 demo.img snaps/home.2

if [ "$(id -u)" != 0 ]; then
	echo; echo "(not root: skipping receive and the FUSE mount)"
	exit 0
fi

# Receive both streams into a fresh filesystem and compare with the snapshots.
truncate -s 512M scratch.img
mkfs.btrfs -q -f scratch.img >/dev/null 2>&1
mkdir -p recv orig fuse
mount -o loop scratch.img recv && mounts+=("$PWD/recv")
run btrfs receive -f full.stream recv
run btrfs receive -f incr.stream recv
mount -o loop,ro demo.img orig && mounts+=("$PWD/orig")
for s in home.1 home.2; do
	# rsync lists every difference of content, type, mode, owner, mtime,
	# xattrs, links and hardlinks; none may remain.
	printf "\n$ rsync -naicHX --delete orig/snaps/%s/ recv/%s/\n" $s $s
	rsync -naicHX --delete orig/snaps/$s/ recv/$s/ >diff.txt
	if [ -s diff.txt ]; then cat diff.txt; echo "snapshot $s differs"; exit 1; fi
	echo "snapshot $s received identical"
done

# The same streams through the FUSE view.
"$bin" mount demo.img fuse 2>fuse.log &
fusepid=$!
for _ in $(seq 50); do mountpoint -q fuse && break; sleep 0.1; done
run ls -l fuse/snapshots/ "fuse/snapshots/home.2 ‹ snaps/from/"
run cmp "fuse/snapshots/home.2 ‹ snaps/from/home.1 ‹ snaps.stream" incr.stream
echo "FUSE stream identical to sendfs send"
