// Package fusefs serves btrfs send streams as a read-only FUSE tree:
//
//	snapshots/<name>/full.stream
//	snapshots/<name>/from/<parent>.stream
//	by-id/<subvolid>  -> ../snapshots/<name>
//	by-uuid/<uuid>    -> ../snapshots/<name>
//
// Every stream file reports its exact length before any of its bytes are
// generated (sendgen's counting mode, cached in memory and on disk) and
// serves any byte range on demand, so tools that trust st_size (rsync, tar,
// mmap, sendfile) copy exactly the stream `sendfs send` writes.
package fusefs
