// Package pcrsim is what the pcrsim command does, one function per
// subcommand (Predict, Verify, Policy, Extract), each taking one config
// struct as gokrazy's gok does: cmd/pcrsim only binds flags to a config,
// calls the function and turns its result into an exit code. The
// predictions themselves come from host/predict; this package resolves
// the user's inputs (Input) once, refuses the combinations that make no
// sense (rules.go) and writes the results.
package pcrsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/vtpmboot/vtpmboot/boot/entry"
)

// Exit codes the subcommands return with a nil error. Any error is a usage
// or input problem: the command prints it as one line and exits 2.
const (
	ExitOK = 0
	// ExitMismatch: verify found a value or event that differs from the
	// prediction.
	ExitMismatch = 1
	// ExitGuestFailed: a guest of --xl-config could not be predicted; the
	// others are still printed (predict) or nothing is written (policy).
	ExitGuestFailed = 1
)

// IO is where a subcommand reads and writes. Name prefixes the notes on
// Stderr ("pcrsim predict").
type IO struct {
	Name   string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

func (o IO) note(format string, a ...any) {
	fmt.Fprintf(o.Stderr, "%s: note: "+format+"\n", append([]any{o.Name}, a...)...)
}

// ArgError is a usage or input problem: it prints as one line naming the
// argument at fault.
type ArgError struct {
	Arg string
	Err error
}

func (e *ArgError) Error() string { return e.Arg + ": " + e.Err.Error() }
func (e *ArgError) Unwrap() error { return e.Err }

func argErr(arg string, format string, a ...any) error {
	return &ArgError{Arg: arg, Err: fmt.Errorf(format, a...)}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func displayName(path string) string {
	if path == "-" {
		return "stdin"
	}
	return path
}

// checkFile gives a clear one-line error before hashing starts, so the
// message names the flag rather than a hashing stage.
func checkFile(arg, path string) error {
	st, err := os.Stat(path)
	switch {
	case os.IsNotExist(err):
		return argErr(arg, "%s: no such file", path)
	case err != nil:
		return argErr(arg, "%s: %v", path, unwrapPath(err))
	case st.IsDir():
		return argErr(arg, "%s: is a directory, want a file", path)
	case !st.Mode().IsRegular():
		return argErr(arg, "%s: not a regular file", path)
	}
	fh, err := os.Open(path)
	if err != nil {
		return argErr(arg, "%s: %v", path, unwrapPath(err))
	}
	fh.Close()
	return nil
}

// unwrapPath drops *PathError's own copy of the path, which we already print.
func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// readInput reads a small input file (or stdin for "-") of at most limit
// bytes, so a wrong path (a disk image, a device) fails fast instead of
// filling memory; what names the kind of file in that error. With a nil
// stdin, "-" is a file name like any other.
func readInput(arg, path string, stdin io.Reader, limit int, what string) ([]byte, error) {
	r := stdin
	if path != "-" || stdin == nil {
		if err := checkFile(arg, path); err != nil {
			return nil, err
		}
		fh, err := os.Open(path)
		if err != nil {
			return nil, argErr(arg, "%s: %v", path, unwrapPath(err))
		}
		defer fh.Close()
		r = fh
	}
	b, err := entry.ReadLimited(r, limit)
	if errors.Is(err, entry.ErrTooLarge) {
		return nil, argErr(arg, "%s: larger than %d bytes, not %s", displayName(path), limit, what)
	}
	if err != nil {
		return nil, argErr(arg, "%s: %v", displayName(path), unwrapPath(err))
	}
	return b, nil
}
