package xl

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Domain types as xl names them.
const (
	TypePV  = "pv"
	TypePVH = "pvh"
	TypeHVM = "hvm"
)

// Name is the name= setting ("" if unset or not a string).
func (c *Config) Name() string {
	s, _ := c.String("name")
	return s
}

// Type is the domain type xl would build: type= ("pv", "pvh", "hvm") or the
// deprecated builder= ("hvm", "generic" meaning pv), defaulting to "pv" as xl
// does on x86. xl compares with strncmp(value, name, strlen(value)), so any
// prefix (even "") selects the first name it matches; we do the same, since
// a prediction must follow what xl builds, not what the user meant.
func (c *Config) Type() (string, error) {
	var typ string
	if v, ok, err := c.StringErr("type"); err != nil {
		return "", err
	} else if ok {
		switch {
		case strings.HasPrefix("hvm", v):
			typ = TypeHVM
		case strings.HasPrefix("pv", v):
			typ = TypePV
		case strings.HasPrefix("pvh", v):
			typ = TypePVH
		default:
			return "", fmt.Errorf("%s:%d: invalid domain type %q", c.File, c.Line("type"), v)
		}
	}
	if v, ok, err := c.StringErr("builder"); err != nil {
		return "", err
	} else if ok {
		var b string
		switch {
		case strings.HasPrefix("hvm", v):
			b = TypeHVM
		case strings.HasPrefix("generic", v):
			b = TypePV
		default:
			return "", fmt.Errorf("%s:%d: invalid builder %q", c.File, c.Line("builder"), v)
		}
		if typ != "" && typ != b {
			return "", fmt.Errorf("%s:%d: contradicting builder=%q and type=%q", c.File, c.Line("builder"), v, typ)
		}
		typ = b
	}
	if typ == "" {
		typ = TypePV
	}
	return typ, nil
}

// Path resolves a path from the config against the config file's directory.
// xl itself opens relative paths against its own working directory; that is
// an accident of how it was started, so we pick the one stable choice.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(c.File), p)
}

func (c *Config) pathSetting(key string) (string, error) {
	v, ok, err := c.StringErr(key)
	if err != nil || !ok {
		return "", err
	}
	return c.Path(v), nil
}

// Kernel is kernel=, resolved (see Path), or "" if unset. For an HVM guest a
// kernel whose basename is "hvmloader" is dropped, as xl does.
func (c *Config) Kernel() (string, error) {
	k, err := c.pathSetting("kernel")
	if err != nil || k == "" {
		return k, err
	}
	if t, err := c.Type(); err == nil && t == TypeHVM && filepath.Base(k) == "hvmloader" {
		return "", nil
	}
	return k, nil
}

// Ramdisk is ramdisk=, resolved (see Path), or "" if unset.
func (c *Config) Ramdisk() (string, error) { return c.pathSetting("ramdisk") }

// Bootloader is bootloader= (e.g. "pygrub"), "" if unset.
func (c *Config) Bootloader() (string, error) {
	v, _, err := c.StringErr("bootloader")
	return v, err
}

// Extra is the extra= string exactly as written (after unquoting): the tail
// of the guest kernel's command line, where vtpmboot.* options live.
func (c *Config) Extra() (string, error) {
	v, _, err := c.StringErr("extra")
	return v, err
}

// Root is root= ("" if unset).
func (c *Config) Root() (string, error) {
	v, _, err := c.StringErr("root")
	return v, err
}

// Cmdline is the command line xl gives the kernel= kernel, built by xl's
// parse_cmdline rules: cmdline= wins outright (root= and extra= are then
// ignored); otherwise "root=R E", "root=R" or "E" from root= and extra=.
// ok is false when none of the three is set (the kernel gets no command line).
func (c *Config) Cmdline() (cmdline string, ok bool, err error) {
	cl, hasCl, err := c.StringErr("cmdline")
	if err != nil {
		return "", false, err
	}
	root, hasRoot, err := c.StringErr("root")
	if err != nil {
		return "", false, err
	}
	extra, hasExtra, err := c.StringErr("extra")
	if err != nil {
		return "", false, err
	}
	switch {
	case hasCl:
		return cl, true, nil
	case hasRoot && hasExtra:
		return "root=" + root + " " + extra, true, nil
	case hasRoot:
		return "root=" + root, true, nil
	case hasExtra:
		return extra, true, nil
	}
	return "", false, nil
}

// VTPM is one vtpm= entry.
type VTPM struct {
	Backend string // backend domain name (required by xl)
	UUID    string // "" if unset: libxl then generates one
	Raw     string
}

// VTPMs parses vtpm= the way xl does: comma-separated backend=/uuid= pairs,
// leading spaces dropped, a backend= required; an item without "=" ends the
// spec (xl stops there silently, so we do too).
func (c *Config) VTPMs() ([]VTPM, error) {
	s, ok := c.settings["vtpm"]
	if !ok {
		return nil, nil
	}
	if !s.val.IsList {
		return nil, fmt.Errorf("%s:%d: vtpm must be a list", c.File, s.line)
	}
	items, _ := c.List("vtpm")
	var out []VTPM
	for i, raw := range items {
		v := VTPM{Raw: raw}
		gotBackend := false
		for _, f := range strings.Split(raw, ",") {
			if f == "" {
				continue // strtok skips empty fields
			}
			f = strings.TrimLeft(f, " ")
			k, val, has := strings.Cut(f, "=")
			if !has {
				break
			}
			switch k {
			case "backend":
				v.Backend, gotBackend = val, true
			case "uuid":
				if !isUUID(val) {
					return nil, fmt.Errorf("%s:%d: vtpm %d: failed to parse uuid %q", c.File, s.line, i, val)
				}
				v.UUID = val
			default:
				return nil, fmt.Errorf("%s:%d: vtpm %d: unknown key %q in %q", c.File, s.line, i, k, raw)
			}
		}
		if !gotBackend {
			return nil, fmt.Errorf("%s:%d: vtpm %d: spec %q has no backend=", c.File, s.line, i, raw)
		}
		out = append(out, v)
	}
	return out, nil
}

// isUUID accepts libxl_uuid_from_string's form: 8-4-4-4-12 hex digits.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if s[i] != '-' {
				return false
			}
		} else if hexVal(s[i]) < 0 {
			return false
		}
	}
	return true
}
