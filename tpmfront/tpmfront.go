// Package tpmfront talks to TPMs: a TPM 1.2 or 2.0 behind a Linux
// character device or an swtpm socket, each a pcrbank.Target. The stub
// extends a real vTPM through it; pcrsim extends a pcrbank.Soft through
// the very same interface, so both follow one code path.
package tpmfront
