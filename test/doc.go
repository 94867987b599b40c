// Package test holds the end-to-end tests of sendfs against the real kernel:
// they build btrfs filesystems on loop devices, record the kernel's own
// `btrfs send` streams, and check that `btrfs receive` of sendfs's streams
// rebuilds the same trees. Everything is in _test.go files; see README.md.
package test
