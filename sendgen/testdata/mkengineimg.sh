#!/bin/sh
# Builds sendgen/testdata/engine.img (then gzip -9): a 16 MiB mixed-mode
# btrfs (4 KiB nodes, crc32c) with a subvolume and two read-only snapshots
# that differ by one change of each kind. Run as root: sh mkengineimg.sh OUT.img
set -e
img=$1
m=$(mktemp -d)
truncate -s 16M "$img"
mkfs.btrfs -q -f --mixed "$img"
loop=$(losetup -f --show "$img")
mount -o compress=zstd "$loop" "$m"
btrfs -q subvolume create "$m/vol"
cd "$m/vol"
mkdir -p d/e
echo small > inline
head -c 40000 /dev/urandom > big
yes sendfs | head -c 200000 > compressed
ln inline d/hardlink
ln -s ../big d/symlink
mkfifo d/fifo
setfattr -n user.x -v value big
truncate -s 1M sparse
printf 'x' | dd of=sparse bs=1 seek=500000 conv=notrunc 2>/dev/null
cp --reflink=always big d/e/clone
cd /
btrfs -q subvolume snapshot -r "$m/vol" "$m/s1"
cd "$m/vol"
echo changed >> inline
mv d/e d/f
rm d/hardlink
printf 'y' | dd of=big bs=1 seek=4096 conv=notrunc 2>/dev/null
setfattr -x user.x big
mkdir new; echo n > new/file
chmod 700 d
cd /
btrfs -q subvolume snapshot -r "$m/vol" "$m/s2"
umount "$m"
losetup -d "$loop"
rmdir "$m"
