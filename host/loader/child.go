package loader

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ChildFlag as argv[1] makes the loader's binary the picker (Main
// dispatches on it). The request follows as JSON in argv[2]; the disk is
// fd 3, read-only; the answer goes to stdout.
const ChildFlag = "--vtpmboot-loader-picker"

// Limits of the picker. libxl kills a restricted bootloader after
// LIBXL_BOOTLOADER_TIMEOUT (120 s, libxl_bootloader.c): the picker gets
// half of that, so the loader still answers with a reason of its own.
// Memory: the picker streams files and holds one chunk, but a filesystem's
// metadata (XFS extent lists, GRUB scripts) lives in memory while it is
// parsed. RLIMIT_DATA bounds what it can actually use (writable private
// mappings: Go's heap), 1 GiB, several times what the largest test disk
// needs. RLIMIT_AS is only a backstop: Go reserves address space it never
// touches (VmPeak 1.5 GB for a 16 MB disk, measured), so an address-space
// bound tight enough to matter kills healthy pickers ("runtime: out of
// memory" at 1 GiB).
var (
	PickTimeout       = 60 * time.Second
	pickAddressSpace  = uint64(8 << 30)
	pickData          = uint64(1 << 30)
	pickCPUSeconds    = uint64(60)
	pickMemoryLimit   = int64(512 << 20)
	pickMaxOpenFiles  = uint64(16)
	pickStderrLimit   = int64(4096)
	errPickerTimedOut = errors.New("reading the disk took too long")
)

// ChildMain is the picker's main: it restricts itself before it reads a
// byte of the disk, then picks.
func ChildMain(args []string, stdout io.Writer) int {
	if err := restrictSelf(); err != nil {
		fmt.Fprintf(os.Stderr, "restrict the disk reader: %v\n", err)
		return 1
	}
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "picker: want one request argument")
		return 1
	}
	var req pickRequest
	if err := json.Unmarshal([]byte(args[0]), &req); err != nil {
		fmt.Fprintf(os.Stderr, "picker: request: %v\n", err)
		return 1
	}
	disk := os.NewFile(3, req.Path)
	if err := pick(disk, req, stdout); err != nil {
		fmt.Fprintf(os.Stderr, "picker: %v\n", err)
		return 1
	}
	return 0
}

// restrictSelf sets the picker's limits. The uid switch and the loss of
// every capability already happened at exec (startPicker); no_new_privs
// keeps a set-uid binary from giving them back.
func restrictSelf() error {
	for _, l := range []struct {
		res int
		v   uint64
	}{
		{unix.RLIMIT_AS, pickAddressSpace},
		{unix.RLIMIT_DATA, pickData},
		{unix.RLIMIT_CPU, pickCPUSeconds},
		{unix.RLIMIT_NOFILE, pickMaxOpenFiles},
		{unix.RLIMIT_FSIZE, 0},
		{unix.RLIMIT_CORE, 0},
	} {
		if err := unix.Setrlimit(l.res, &unix.Rlimit{Cur: l.v, Max: l.v}); err != nil {
			return fmt.Errorf("setrlimit %d: %w", l.res, err)
		}
	}
	debug.SetMemoryLimit(pickMemoryLimit)
	return unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
}

// runPicker starts the picker on disk (as uid when uid >= 0) and hands
// its answer to consume; it returns consume's result, or why the picker
// failed.
func runPicker(exe string, disk *os.File, uid int, req pickRequest, consume func(io.Reader) (*picked, error)) (*picked, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, ChildFlag, string(b))
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/nonexistent"}
	cmd.ExtraFiles = []*os.File{disk}
	var stderr limitedBuffer
	stderr.limit = pickStderrLimit
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	// A pipe holds 64 KiB by default: the picker would stop after each
	// sixteenth of a chunk. 1 MiB is /proc/sys/fs/pipe-max-size's default;
	// a smaller maximum only costs speed.
	if f, ok := out.(*os.File); ok {
		unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, chunkSize)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if uid >= 0 {
		// Group: the uid's number too, a group that owns nothing in a
		// dom0 that follows libxl's uid-range convention; root's group
		// would let the picker read group-root files. No supplementary
		// groups.
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the disk reader %s: %w", exe, err)
	}
	timer := time.AfterFunc(PickTimeout, func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	p, cerr := consume(out)
	// Whatever consume read, the picker is finished with: a picker that
	// still runs after its answer, or lies about it, is killed.
	io.Copy(io.Discard, io.LimitReader(out, 1))
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	werr := cmd.Wait()
	timedOut := !timer.Stop()
	if timedOut {
		if p != nil {
			cleanup(p)
		}
		return nil, fmt.Errorf("%w: the disk reader was stopped after %v", errPickerTimedOut, PickTimeout)
	}
	if cerr != nil {
		if errors.Is(cerr, errPicker) {
			if msg := strings.TrimSpace(stderr.String()); msg != "" {
				return nil, fmt.Errorf("%w (%s: %s)", cerr, werr, firstLine(msg))
			}
			if werr != nil {
				return nil, fmt.Errorf("%w (%v)", cerr, werr)
			}
		}
		return nil, cerr
	}
	return p, nil
}

// firstLine is what a crashed Go program says first ("fatal error: ...",
// "panic: ...").
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func cleanup(p *picked) {
	if p.KernelPath != "" {
		os.Remove(p.KernelPath)
	}
	if p.InitrdPath != "" {
		os.Remove(p.InitrdPath)
	}
}

type limitedBuffer struct {
	strings.Builder
	limit int64
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.limit - int64(l.Len()); room > 0 {
		if int64(len(p)) > room {
			l.Builder.Write(p[:room])
		} else {
			l.Builder.Write(p)
		}
	}
	return len(p), nil
}
