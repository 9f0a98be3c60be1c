// Package target is the system the e2e boots kexec into: its /init
// (targetinit), which reports what it booted with (/proc/cmdline, the
// TPM's PCRs, the event log) on the console, and that report's format
// (report). TestSmoke boots the target on its own under QEMU, so a broken
// target is not mistaken for a broken stub. The end-to-end tests of the
// stub itself are in e2e/.
package target
