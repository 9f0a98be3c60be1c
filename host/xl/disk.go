package xl

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Disk is one disk= entry, parsed as libxlu_disk_l.l does.
type Disk struct {
	Target        string // as written ("" for an empty cdrom)
	Format        string // raw, qcow, qcow2, vhd, qed, empty
	Vdev          string // as written: xvda, hdc, sdb1, d0p1 ...
	Access        string // "rw" or "ro"
	Devtype       string // "disk" or "cdrom"
	Script        string // script= or from iscsi:/nbd:/enbd:/drbd: ("block-iscsi")
	Backend       string // backend domain name, "" for dom0
	BackendType   string // phy, qdisk, standalone, tap, or ""
	Specification string // xen (default) or virtio
	Raw           string // the spec as written in the config

	// Path is Target resolved against the config's directory (see
	// Config.Path): what pcrsim opens. "" when Target is not a dom0 path
	// (script= targets, QEMU URLs, disks served by a driver domain).
	Path string
	// Linux is the name the guest's Linux kernel gives the device
	// (xen-blkfront: hda, sda and xvda all become xvda), "" if unknown.
	Linux string

	index, part int
	line        int
}

// CDROM reports whether the guest sees the disk as a cdrom.
func (d Disk) CDROM() bool { return d.Devtype == "cdrom" }

// Check says whether pcrsim can read the disk's bytes in dom0 as the guest
// sees them: raw format (or VHD, whose fixed form boot/diskimage reads), a
// plain path in dom0's namespace. A block device
// (phy:, an LV) is fine: dom0 can read it; opening it is the caller's job.
func (d Disk) Check() error {
	name := d.Vdev
	switch {
	case d.Format == "empty" || d.Target == "":
		return fmt.Errorf("disk %s: no target (empty drive)", name)
	case d.Format != "raw" && d.Format != "vhd":
		// boot/diskimage reads a fixed VHD (raw plus a footer) and
		// refuses a dynamic one, saying how to convert it.
		return fmt.Errorf("disk %s: format %s is not supported; convert it with `qemu-img convert -O raw %s %s.raw`, point the config at the copy, or give --disk", name, d.Format, d.Target, d.Target)
	case d.Script != "":
		return fmt.Errorf("disk %s: target %q is interpreted by script %s, not a dom0 path; give --disk", name, d.Target, d.Script)
	case d.Backend != "" && d.Backend != "0" && d.Backend != "Domain-0":
		return fmt.Errorf("disk %s: served by backend domain %s, so %q is a path in that domain, not dom0; give --disk", name, d.Backend, d.Target)
	case d.Specification == "virtio":
		return fmt.Errorf("disk %s: specification=virtio: the guest sees a virtio disk whose name and order we do not model; give --disk", name)
	case qemuProtocol(d.Target) != "":
		return fmt.Errorf("disk %s: target %q is a QEMU %s: URL, not a file; give --disk", name, d.Target, qemuProtocol(d.Target))
	}
	return nil
}

// dom0Path says whether Target names something in dom0's filesystem at all
// (as opposed to script arguments, QEMU URLs or a driver domain's paths).
func (d Disk) dom0Path() bool {
	return d.Target != "" && d.Script == "" && qemuProtocol(d.Target) == "" &&
		(d.Backend == "" || d.Backend == "0" || d.Backend == "Domain-0")
}

// qemuProtocol spots qdisk targets such as rbd:pool/image or
// nbd://host/export that QEMU opens itself.
func qemuProtocol(t string) string {
	i := strings.IndexByte(t, ':')
	if i <= 0 || strings.HasPrefix(t, "/") {
		return ""
	}
	p := t[:i]
	for j := 0; j < len(p); j++ {
		c := p[j]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '-') {
			return ""
		}
	}
	return p
}

// Disks parses every disk= entry. Errors name the file, line and entry.
func (c *Config) Disks() ([]Disk, error) {
	s, ok := c.settings["disk"]
	if !ok {
		return nil, nil
	}
	if !s.val.IsList {
		return nil, fmt.Errorf("%s:%d: disk must be a list of specs", c.File, s.line)
	}
	items, _ := c.List("disk")
	out := make([]Disk, 0, len(items))
	for i, spec := range items {
		d, err := ParseDiskSpec(spec)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: disk %d: %w", c.File, s.line, i, err)
		}
		if d.dom0Path() {
			d.Path = c.Path(d.Target)
		}
		d.line = s.line
		out = append(out, d)
	}
	return out, nil
}

// DisksInBootOrder is the non-cdrom disks sorted by the Linux device they
// become (xvda, xvdb, ..., xvdz, xvdaa: the kernel's index order, not string
// order), the order in which the stub scans them. Two disks that would get
// the same Linux name are an error: the second would not appear in the guest.
func (c *Config) DisksInBootOrder() ([]Disk, error) {
	all, err := c.Disks()
	if err != nil {
		return nil, err
	}
	var out []Disk
	seen := map[string]string{}
	for _, d := range all {
		if d.CDROM() {
			continue
		}
		if d.Specification == "virtio" {
			// Not an xvd device: keep it out of the xvd order but let
			// BootDisk's caller see why via Check if it is the only one.
			continue
		}
		if other, dup := seen[d.Linux]; dup {
			return nil, fmt.Errorf("%s:%d: disks %s and %s both become %s in the guest", c.File, d.line, other, d.Vdev, d.Linux)
		}
		seen[d.Linux] = d.Vdev
		out = append(out, d)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].index != out[j].index {
			return out[i].index < out[j].index
		}
		return out[i].part < out[j].part
	})
	return out, nil
}

// ErrNoDisk is returned by BootDisk when the config has no bootable disk.
var ErrNoDisk = errors.New("no disk to boot from")

// BootDisk is the first disk in boot order, provided pcrsim can read it (see
// Disk.Check). It does not skip an unreadable first disk: the stub would
// look at that disk first, so a prediction from a later one could be wrong.
func (c *Config) BootDisk() (Disk, error) {
	ds, err := c.DisksInBootOrder()
	if err != nil {
		return Disk{}, err
	}
	if len(ds) == 0 {
		return Disk{}, fmt.Errorf("%s: %w (no non-cdrom xen disk in disk=)", c.File, ErrNoDisk)
	}
	if err := ds[0].Check(); err != nil {
		return Disk{}, fmt.Errorf("%s:%d: %w", c.File, ds[0].line, err)
	}
	return ds[0], nil
}

// ---- disk spec lexer (libxlu_disk_l.l) ----

type diskState struct {
	d             Disk
	targetSet     bool
	formatSet     bool
	vdevSet       bool
	accessSet     bool
	hadDeprPrefix bool
}

var diskKeys = map[string]bool{
	"format": true, "devtype": true, "access": true, "backend": true,
	"backendtype": true, "specification": true, "vdev": true, "script": true,
	"colo-host": true, "colo-port": true, "colo-export": true,
	"active-disk": true, "hidden-disk": true, "grant_usage": true,
}

var diskFlags = map[string]bool{
	"cdrom": true, "direct-io-safe": true, "discard": true, "no-discard": true,
	"colo": true, "no-colo": true, "trusted": true, "untrusted": true,
}

// Deprecated "prefix:" forms. Format prefixes set the format, script
// prefixes the script, the rest are ignored (xl strips them).
var diskPrefixes = map[string]string{
	"raw": "format", "qcow": "format", "qcow2": "format", "vhd": "format",
	"iscsi": "script", "nbd": "script", "enbd": "script", "drbd": "script",
	"tapdisk": "", "tap": "", "tap2": "", "aio": "", "ioemu": "", "file": "", "phy": "",
}

// ParseDiskSpec parses one DISKSPEC (xl-disk-configuration(5)): positional
// target,format,vdev,access; key=value parameters and flags; the deprecated
// prefix forms (phy:, file:, tap:aio:, raw:, ...); target= swallowing the
// rest of the spec, commas included. Linux is filled in from Vdev.
func ParseDiskSpec(spec string) (Disk, error) {
	d, err := parseDiskSyntax(spec)
	if err != nil {
		return Disk{}, err
	}
	d.Linux, d.index, d.part, err = LinuxName(d.Vdev)
	if err != nil {
		return Disk{}, fmt.Errorf("vdev %q in %q: %w", d.Vdev, d.Raw, err)
	}
	return d, nil
}

// parseDiskSyntax is exactly what libxlu's disk parser accepts; libxl's
// later checks (vdev syntax) are ParseDiskSpec's.
func parseDiskSyntax(spec string) (Disk, error) {
	st := &diskState{d: Disk{Raw: spec, Access: "rw", Devtype: "disk", Specification: "xen"}}
	s := spec
	for len(s) > 0 {
		if c := s[0]; c == ' ' || c == '\t' || c == '\n' {
			s = s[1:]
			continue
		}
		if strings.HasPrefix(s, "target=") {
			v := s[len("target="):]
			rest := ""
			if nl := strings.IndexByte(v, '\n'); nl >= 0 {
				v, rest = v[:nl], v[nl:]
			}
			v = strings.TrimSuffix(v, ",")
			if err := st.setTarget(v); err != nil {
				return Disk{}, err
			}
			s = rest
			continue
		}
		if p, n, ok := diskPrefix(s); ok {
			kind, known := diskPrefixes[p]
			if !known {
				return Disk{}, fmt.Errorf("unknown deprecated disk prefix %q in %q", p+":", spec)
			}
			st.hadDeprPrefix = true
			switch kind {
			case "format":
				if err := st.setFormat(p); err != nil {
					return Disk{}, err
				}
			case "script":
				if err := st.setString("script", &st.d.Script, "block-"+p); err != nil {
					return Disk{}, err
				}
			}
			s = s[n:]
			continue
		}
		// The positional pattern [^=,]*,|[^=,]+,? and the keyword patterns
		// compete by longest match; the token up to '=' or ',' decides.
		end := strings.IndexAny(s, "=,")
		if end < 0 {
			end = len(s)
		}
		tok := s[:end]
		if end < len(s) && s[end] == '=' && !diskKeys[tok] && !isParamName(tok) {
			// No keyword rule matches, so libxlu's scanner takes tok as
			// positional and is left with the '=': like every stray
			// character it is an error, except as the spec's very last
			// byte, which the scanner drops (the quirk Parse mirrors for
			// whole files).
			if end != len(s)-1 {
				return Disk{}, fmt.Errorf("bad disk syntax near %q in %q (a target containing '=' needs target=, last)", s, spec)
			}
			if tok != "" { // the positional rules need at least one character here
				if err := st.positional(tok); err != nil {
					return Disk{}, err
				}
			}
			s = ""
			continue
		}
		if end < len(s) && s[end] == '=' {
			if !diskKeys[tok] {
				return Disk{}, fmt.Errorf("unknown parameter %q in %q", tok, spec)
			}
			vend := strings.IndexByte(s[end+1:], ',')
			var val string
			if vend < 0 {
				val, s = s[end+1:], ""
			} else {
				val, s = s[end+1:end+1+vend], s[end+1+vend+1:]
			}
			if err := st.keyword(tok, val); err != nil {
				return Disk{}, err
			}
			continue
		}
		if end < len(s) { // a comma
			s = s[end+1:]
		} else {
			s = ""
		}
		if diskFlags[tok] {
			if tok == "cdrom" {
				st.d.Devtype = "cdrom"
			}
			continue
		}
		if err := st.positional(tok); err != nil {
			return Disk{}, err
		}
	}
	return st.finish()
}

// diskPrefix matches [a-z][a-z0-9]*: at the start of s. Known prefixes
// always match; an unknown one only when not followed by [a-z0-9] (so that
// "hdc:cdrom" stays a positional vdev), as in libxlu's rules.
func diskPrefix(s string) (string, int, bool) {
	if len(s) == 0 || s[0] < 'a' || s[0] > 'z' {
		return "", 0, false
	}
	i := 1
	for i < len(s) && (s[i] >= 'a' && s[i] <= 'z' || s[i] >= '0' && s[i] <= '9') {
		i++
	}
	if i >= len(s) || s[i] != ':' {
		return "", 0, false
	}
	p := s[:i]
	if _, known := diskPrefixes[p]; known {
		return p, i + 1, true
	}
	if i+1 < len(s) && (s[i+1] >= 'a' && s[i+1] <= 'z' || s[i+1] >= '0' && s[i+1] <= '9') {
		return "", 0, false
	}
	return p, i + 1, true
}

func isParamName(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c == '-' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func (st *diskState) keyword(k, v string) error {
	switch k {
	case "format":
		return st.setFormat(v)
	case "devtype":
		switch v {
		case "cdrom", "disk":
			st.d.Devtype = v
			return nil
		}
		return fmt.Errorf("unknown value %q for devtype in %q", v, st.d.Raw)
	case "access":
		return st.setAccess(v)
	case "backend":
		return st.setString("backend", &st.d.Backend, v)
	case "backendtype":
		switch v {
		case "phy", "tap", "qdisk", "standalone":
		default:
			return fmt.Errorf("unknown value %q for backendtype in %q", v, st.d.Raw)
		}
		if st.d.BackendType != "" && st.d.BackendType != v {
			return fmt.Errorf("backendtype respecified in %q", st.d.Raw)
		}
		st.d.BackendType = v
		return nil
	case "specification":
		switch v {
		case "xen", "virtio":
		default:
			return fmt.Errorf("unknown value %q for specification in %q", v, st.d.Raw)
		}
		st.d.Specification = v
		return nil
	case "vdev":
		st.vdevSet = true
		return st.setString("vdev", &st.d.Vdev, v)
	case "script":
		return st.setString("script", &st.d.Script, v)
	case "grant_usage":
		if v != "0" && v != "1" {
			return fmt.Errorf("unknown value %q for grant_usage in %q", v, st.d.Raw)
		}
	case "colo-port":
		if n, err := strconv.Atoi(v); err != nil || n == 0 {
			return fmt.Errorf("unknown value %q for colo-port in %q", v, st.d.Raw)
		}
	}
	return nil // COLO strings: irrelevant to what the guest boots
}

// setString mirrors libxlu's savestring: an empty earlier value may be
// replaced, a non-empty one may not.
func (st *diskState) setString(what string, dst *string, v string) error {
	if *dst != "" {
		return fmt.Errorf("%s respecified near %q in %q", what, v, st.d.Raw)
	}
	*dst = v
	return nil
}

func (st *diskState) setTarget(v string) error {
	if st.targetSet && st.d.Target != "" {
		return fmt.Errorf("target respecified near %q in %q", v, st.d.Raw)
	}
	st.targetSet = true
	st.d.Target = v
	return nil
}

func (st *diskState) setFormat(v string) error {
	if v == "" {
		v = "raw"
	}
	switch v {
	case "raw", "qcow", "qcow2", "vhd", "empty", "qed":
	default:
		return fmt.Errorf("unknown value %q for format in %q", v, st.d.Raw)
	}
	if st.formatSet && st.d.Format != v {
		return fmt.Errorf("format respecified near %q in %q", v, st.d.Raw)
	}
	st.formatSet = true
	st.d.Format = v
	return nil
}

func (st *diskState) setAccess(v string) error {
	switch v {
	case "r", "ro":
		st.d.Access = "ro"
	case "rw", "w", "":
		st.d.Access = "rw"
	default:
		return fmt.Errorf("unknown value %q for access in %q", v, st.d.Raw)
	}
	return nil
}

// vdevAndDevtype handles the deprecated "vdev:devtype" positional form.
func (st *diskState) vdevAndDevtype(tok string) (bool, error) {
	i := strings.LastIndexByte(tok, ':')
	if i < 0 {
		return false, nil
	}
	st.vdevSet = true
	if err := st.setString("vdev", &st.d.Vdev, tok[:i]); err != nil {
		return true, err
	}
	switch tok[i+1:] {
	case "cdrom":
		st.d.Devtype = "cdrom"
	case "disk":
		st.d.Devtype = "disk"
	default:
		return true, fmt.Errorf("unknown deprecated type %q in %q", tok[i+1:], st.d.Raw)
	}
	return true, nil
}

func (st *diskState) positional(tok string) error {
	switch {
	case !st.targetSet:
		return st.setTarget(tok)
	case !st.hadDeprPrefix && !st.formatSet:
		if st.d.Target == "" {
			if ok, err := st.vdevAndDevtype(tok); ok {
				if err != nil {
					return err
				}
				st.formatSet, st.d.Format = true, "empty"
				return nil
			}
		}
		return st.setFormat(tok)
	case !st.vdevSet:
		if ok, err := st.vdevAndDevtype(tok); ok {
			return err
		}
		st.vdevSet = true
		return st.setString("vdev", &st.d.Vdev, tok)
	case !st.accessSet:
		st.accessSet = true
		return st.setAccess(tok)
	}
	return fmt.Errorf("too many positional parameters near %q in %q", tok, st.d.Raw)
}

func (st *diskState) finish() (Disk, error) {
	d := st.d
	if !st.formatSet {
		d.Format = "raw"
	}
	if d.CDROM() {
		d.Access = "ro"
		if d.Target == "" {
			d.Format = "empty"
		}
	}
	if !st.vdevSet { // libxlu accepts an empty vdev; LinuxName rejects it
		return Disk{}, fmt.Errorf("no vdev specified in %q", d.Raw)
	}
	if !st.targetSet && !d.CDROM() {
		return Disk{}, fmt.Errorf("no target specified (and device not removable) in %q", d.Raw)
	}
	return d, nil
}

// LinuxName maps a vdev (xen-vbd-interface(7)) to the name Linux's
// xen-blkfront gives it, with the disk index and partition that order it.
// blkfront names IDE (hd) and SCSI (sd) vdevs with the same "xvd" letters
// (EMULATED_*_DISK_NAME_OFFSET is 0), so hda, sda and xvda all become xvda;
// under HVM this holds once the emulated disks are unplugged, which Linux
// does by default. Ranges follow libxl: hda-hdd, sda-sdp, xvd up to 2^20
// disks, and dN / dNpM.
func LinuxName(vdev string) (name string, index, part int, err error) {
	var prefix, letters string
	var maxDisk, maxPart int
	rest := vdev
	switch {
	case strings.HasPrefix(vdev, "xvd"):
		prefix, rest, maxDisk, maxPart = "xvd", vdev[3:], 1<<20-1, 255
	case strings.HasPrefix(vdev, "hd"):
		prefix, rest, maxDisk, maxPart = "hd", vdev[2:], 3, 63
	case strings.HasPrefix(vdev, "sd"):
		prefix, rest, maxDisk, maxPart = "sd", vdev[2:], 15, 15
	case strings.HasPrefix(vdev, "d") && len(vdev) > 1 && vdev[1] >= '0' && vdev[1] <= '9':
		num, p, hasP := strings.Cut(vdev[1:], "p")
		index, err = decimal(num, 1<<20-1)
		if err != nil {
			return "", 0, 0, err
		}
		if hasP {
			if part, err = decimal(p, 255); err != nil || part == 0 {
				return "", 0, 0, fmt.Errorf("bad partition in %q", vdev)
			}
		}
		return blkName(index, part), index, part, nil
	default:
		return "", 0, 0, errors.New("not an xvd, hd, sd or dN device name")
	}
	i := 0
	for i < len(rest) && rest[i] >= 'a' && rest[i] <= 'z' {
		i++
	}
	letters, rest = rest[:i], rest[i:]
	if letters == "" || len(letters) > 5 {
		return "", 0, 0, fmt.Errorf("bad disk letters in %s device name", prefix)
	}
	index = -1
	for j := 0; j < len(letters); j++ {
		index = (index+1)*26 + int(letters[j]-'a')
	}
	if index > maxDisk {
		return "", 0, 0, fmt.Errorf("disk index %d beyond what libxl accepts for %s", index, prefix)
	}
	if rest != "" {
		if part, err = decimal(rest, maxPart); err != nil || part == 0 {
			return "", 0, 0, fmt.Errorf("bad partition %q", rest)
		}
	}
	return blkName(index, part), index, part, nil
}

func decimal(s string, max int) (int, error) {
	if s == "" || len(s) > 7 || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("bad number %q", s)
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("bad number %q", s)
		}
		n = n*10 + int(s[i]-'0')
	}
	if n > max {
		return 0, fmt.Errorf("number %d above %d", n, max)
	}
	return n, nil
}

// blkName is xen-blkfront's encode_disk_name plus the partition number.
func blkName(index, part int) string {
	var b []byte
	for n := index; ; n = n/26 - 1 {
		b = append([]byte{byte('a' + n%26)}, b...)
		if n < 26 {
			break
		}
	}
	name := "xvd" + string(b)
	if part > 0 {
		name += strconv.Itoa(part)
	}
	return name
}
