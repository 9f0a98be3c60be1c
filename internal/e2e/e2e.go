// Package e2e holds the QEMU end-to-end tests and what they boot: the
// target system's /init (targetinit) and its report format (report).
package e2e
