// Package kexec loads what the stub measured and jumps into it: file bytes
// go into sealed memfds once, the measurement reads those memfds, and
// kexec_file_load gets the very same file descriptors, so the bytes
// measured and the bytes booted cannot differ. Linux only.
package kexec
