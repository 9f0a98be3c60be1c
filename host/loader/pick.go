package loader

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vtpmboot/vtpmboot/boot/entry"
	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// The picker is the part of the loader that parses the guest's disk: it
// runs in a child process (as libxl's --runas uid when given) and sends
// the parent only a small header and the chosen bytes. The parent never
// parses the disk; it writes the bytes to root-only files, hashes those
// files and talks to the vTPM.

// pickRequest is what the picker needs, passed on its command line.
type pickRequest struct {
	Path  string // the disk's path, for messages only: the disk is fd 3
	VDev  string
	Entry string
	Disk  string
	Extra string
}

// pickHeader is the picker's answer; the blobs follow it.
type pickHeader struct {
	Error string `json:",omitempty"`
	// Kernel and Initrd name the files for the event log; Initrd is ""
	// when the entry has no initrd, and then no initrd blob follows.
	Kernel, Initrd string
	Cmdline        string
	Reason         string
	// UID and CapEff are the picker's own credentials as the kernel
	// reports them (/proc/self/status), for the log and the parent's
	// check that restricted mode took effect.
	UID    int
	CapEff string
	// DataLimit and CPULimit are its RLIMIT_DATA (bytes) and RLIMIT_CPU
	// (seconds), for the log.
	DataLimit, CPULimit uint64
}

// Frames: the header (JSON) and each blob are sent as chunks of a u32
// length and that many bytes, ended by a zero length. The parent bounds
// every count, so a compromised picker can make it read no more than the
// limits below and write no more than the stub would load.
const (
	maxHeader = 64 << 10
	chunkSize = 1 << 20
)

// pick runs in the picker: it reads the disk, chooses, and streams.
func pick(disk *os.File, req pickRequest, w io.Writer) error {
	bw := bufio.NewWriterSize(w, chunkSize+4)
	defer bw.Flush()
	hdr, in, err := choose(disk, req)
	if err != nil {
		hdr = pickHeader{Error: err.Error()}
	}
	hdr.UID, hdr.CapEff = os.Getuid(), capEff()
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_DATA, &rl) == nil {
		hdr.DataLimit = rl.Cur
	}
	if unix.Getrlimit(unix.RLIMIT_CPU, &rl) == nil {
		hdr.CPULimit = rl.Cur
	}
	b, err2 := json.Marshal(hdr)
	if err2 != nil {
		return err2
	}
	if err := writeBlob(bw, strings.NewReader(string(b))); err != nil {
		return err
	}
	if err != nil {
		return nil // the error went out in the header
	}
	if err := sendSource(bw, in.Kernel); err != nil {
		return err
	}
	if len(in.Initrds) > 0 {
		if err := sendSource(bw, measure.InitrdImage(in.Initrds)); err != nil {
			return err
		}
	}
	return bw.Flush()
}

func choose(disk *os.File, req pickRequest) (pickHeader, measure.Inputs, error) {
	st, err := disk.Stat()
	if err != nil {
		return pickHeader{}, measure.Inputs{}, fmt.Errorf("disk %s: %w", req.Path, err)
	}
	size := st.Size()
	if st.Mode()&os.ModeDevice != 0 {
		// A block device's Stat size is 0: its end is where Seek says.
		if size, err = disk.Seek(0, io.SeekEnd); err != nil {
			return pickHeader{}, measure.Inputs{}, fmt.Errorf("disk %s: size: %w", req.Path, err)
		}
	} else if !st.Mode().IsRegular() {
		return pickHeader{}, measure.Inputs{}, fmt.Errorf("disk %s: neither a file nor a block device (%v)", req.Path, st.Mode().Type())
	}
	c, err := Choose(disk, size, req.Path, req.VDev, ChooseOptions{Entry: req.Entry, Disk: req.Disk})
	if err != nil {
		return pickHeader{}, measure.Inputs{}, err
	}
	cmdline, err := FinalCmdline(c.Entry.Cmdline, req.Extra)
	if err != nil {
		return pickHeader{}, measure.Inputs{}, fmt.Errorf("disk %s: entry %q: %w", req.Path, c.Entry.Title, err)
	}
	in := c.Inputs()
	h := pickHeader{Kernel: in.Kernel.Name(), Cmdline: cmdline, Reason: c.Reason}
	if len(in.Initrds) > 0 {
		h.Initrd = measure.InitrdImage(in.Initrds).Name()
	}
	return h, in, nil
}

// capEff is the CapEff line of /proc/self/status ("" if unreadable).
func capEff() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func sendSource(w io.Writer, s measure.Source) error {
	rc, err := s.Open()
	if err != nil {
		return fmt.Errorf("read %s: %w", s.Name(), err)
	}
	defer rc.Close()
	return writeBlob(w, rc)
}

func writeBlob(w io.Writer, r io.Reader) error {
	buf := make([]byte, chunkSize)
	var n4 [4]byte
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			binary.BigEndian.PutUint32(n4[:], uint32(n))
			if _, werr := w.Write(n4[:]); werr != nil {
				return werr
			}
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return err
		}
	}
	binary.BigEndian.PutUint32(n4[:], 0)
	_, err := w.Write(n4[:])
	return err
}

// errPicker marks a malformed stream: the picker broke or was subverted.
var errPicker = errors.New("disk reader sent a malformed answer")

// readBlob copies one framed blob to w, refusing more than limit bytes.
// Each chunk is read whole and written in one call, so that the hashers
// behind w get a few large writes, not one per 32 KiB.
func readBlob(r io.Reader, w io.Writer, limit int64) (int64, error) {
	var total int64
	var n4 [4]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(r, n4[:]); err != nil {
			return total, fmt.Errorf("%w: %v", errPicker, err)
		}
		n := int64(binary.BigEndian.Uint32(n4[:]))
		if n == 0 {
			return total, nil
		}
		if n > chunkSize || total+n > limit {
			return total, fmt.Errorf("%w: more than %d bytes", errPicker, limit)
		}
		if int64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return total, fmt.Errorf("%w: %v", errPicker, err)
		}
		if _, err := w.Write(buf[:n]); err != nil {
			return total, err
		}
		total += n
	}
}

// picked is what the parent has after reading the picker's answer: the
// files it wrote, which only root can write, and the digests of exactly
// the bytes it wrote to them.
type picked struct {
	pickHeader
	KernelPath, InitrdPath string // InitrdPath "" when there is none
	// KernelDigests and InitrdDigests are in every bank receive was
	// given (none: nil).
	KernelDigests, InitrdDigests pcrbank.Digests
	// HashBusy is how long hashing took, overlapped with the reading.
	HashBusy time.Duration
}

// receive reads the picker's answer and writes the kernel and the initrd
// image into dir as new files (O_EXCL, O_NOFOLLOW, mode 0600), hashing
// every byte in every bank of banks as it is written.
func receive(r io.Reader, dir string, banks []pcrbank.Alg) (*picked, error) {
	var hb strings.Builder
	if _, err := readBlob(r, &hb, maxHeader); err != nil {
		return nil, err
	}
	var p picked
	if err := json.Unmarshal([]byte(hb.String()), &p.pickHeader); err != nil {
		return nil, fmt.Errorf("%w: header: %v", errPicker, err)
	}
	if p.Error != "" {
		return nil, errors.New(p.Error)
	}
	// The picker applied these rules already; a subverted picker must
	// not get past them either.
	if c, err := FinalCmdline(p.Cmdline, ""); err != nil || c != p.Cmdline {
		return nil, fmt.Errorf("%w: command line %q", errPicker, p.Cmdline)
	}
	if p.Kernel == "" {
		return nil, fmt.Errorf("%w: no kernel name", errPicker)
	}
	var err error
	var busy time.Duration
	if p.KernelPath, p.KernelDigests, busy, err = writeFile(r, dir, "kernel", entry.MaxKernelSize, banks); err != nil {
		return nil, err
	}
	p.HashBusy += busy
	if p.Initrd != "" {
		if p.InitrdPath, p.InitrdDigests, busy, err = writeFile(r, dir, "ramdisk", entry.MaxInitrdTotalSize, banks); err != nil {
			os.Remove(p.KernelPath)
			return nil, err
		}
		p.HashBusy += busy
	}
	return &p, nil
}

func writeFile(r io.Reader, dir, name string, limit int64, banks []pcrbank.Alg) (string, pcrbank.Digests, time.Duration, error) {
	path := dir + "/" + name
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return "", nil, 0, fmt.Errorf("create %s: %w", path, err)
	}
	// readBlob writes whole chunks: no buffering needed.
	hs := newMultiHash(banks)
	_, err = readBlob(r, io.MultiWriter(f, hs), limit)
	d, busy := hs.Sum()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", nil, 0, fmt.Errorf("write %s: %w", path, err)
	}
	return path, d, busy, nil
}

// Source of a written file under the guest's name for it: the event log
// names guest paths, the bytes come from the root-only copy.
type namedFile struct{ name, path string }

func (n namedFile) Name() string { return n.name }
func (n namedFile) Open() (io.ReadCloser, error) {
	return measure.FileSource(n.path).Open()
}

var _ measure.Source = namedFile{}
