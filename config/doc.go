// Package config reads the stub's options from a kernel command line
// (vtpmboot.entry=, vtpmboot.disk=, vtpmboot.tpm=, vtpmboot.timeout=,
// vtpmboot.debug). The stub parses /proc/cmdline with it; pcrsim parses an
// xl config's extra= string with the same function, so both agree on which
// entry and disk a guest asked for. host/xl parses xl domU files.
package config
