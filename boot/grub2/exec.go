package grub2

import (
	"fmt"
	"io/fs"
	goregexp "regexp"
	"strconv"
	"strings"

	"github.com/vtpmboot/vtpmboot/boot/bls"
	"github.com/vtpmboot/vtpmboot/boot/entry"
	"github.com/vtpmboot/vtpmboot/boot/grub2/grubenv"
)

func (in *interp) lookup(c *ctx, name string) (string, bool) {
	// Outside a function or menu entry there is no scope, and GRUB's
	// special variables are empty (grub_script_env_get, script/execute.c):
	// $# is "", not "0".
	switch name {
	case "#":
		if c.args == nil {
			return "", false
		}
		return strconv.Itoa(len(c.args)), true
	case "@", "*":
		return strings.Join(c.args, " "), true
	}
	if n, err := strconv.Atoi(name); err == nil && name[0] != '-' {
		if n >= 1 && n <= len(c.args) {
			return c.args[n-1], true
		}
		return "", false
	}
	v, ok := c.vars[name]
	if name == "root" {
		in.rootUsed = true
	}
	return v, ok
}

// expand turns a word into arguments as grub_script_arglist_to_argv does:
// unquoted variables are split at whitespace (the first field joins the
// text before it), quoted text always yields an argument, and a word made
// only of empty unquoted variables yields none.
func (in *interp) expand(c *ctx, w word) ([]string, error) {
	var out []string
	var cur strings.Builder
	started := false
	for _, p := range w {
		switch p.kind {
		case pLit, pQuote:
			cur.WriteString(p.text)
			started = true
		case pDQVar:
			v, _ := in.lookup(c, p.text)
			cur.WriteString(v)
			started = true
		case pVar:
			v, _ := in.lookup(c, p.text)
			// grub_script_argv_split_append: leading whitespace is
			// skipped, so it neither ends the text before the variable
			// nor makes an empty argument (e2e/loader grub2/while-loop).
			s := strings.TrimLeft(v, " \t\n\r\v\f")
			for len(s) > 0 {
				i := 0
				for i < len(s) && !isSpace(s[i]) {
					i++
				}
				cur.WriteString(s[:i])
				started = true
				s = s[i:]
				for len(s) > 0 && isSpace(s[0]) {
					s = s[1:]
				}
				if len(s) > 0 {
					out = append(out, cur.String())
					cur.Reset()
				}
			}
		}
		if cur.Len() > MaxVarSize {
			return nil, fmt.Errorf("argument longer than %d bytes", MaxVarSize)
		}
	}
	if started {
		out = append(out, cur.String())
	}
	for _, a := range out {
		in.work += len(a) + 1
	}
	if in.work > MaxWork {
		return nil, fmt.Errorf("more than %d bytes of expanded arguments; giving up", MaxWork)
	}
	return out, nil
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func isName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isVarChar(s[i]) {
			return false
		}
	}
	return true
}

func (in *interp) setVar(c *ctx, name, val string) error {
	if len(val) > MaxVarSize {
		return fmt.Errorf("value of %s longer than %d bytes", name, MaxVarSize)
	}
	if name == "root" {
		in.rootSet = true
	}
	c.vars[name] = val
	return nil
}

// silent are commands with no effect on what is booted.
var silent = map[string]bool{
	"insmod": true, "set_gfxmode": true, "terminal_output": true, "terminal_input": true,
	"terminal": true, "gfxmode": true, "loadfont": true, "font": true, "background_image": true,
	"echo": true, "save_env": true, "savedefault": true, "recordfail": true, "serial": true,
	"gfxterm": true, "play": true, "sleep": true, "clear": true, "load_video": true,
	"set_background_color": true, "timeout": true, "rmmod": true, "boot": true,
	"cryptomount": true, "lsefi": true, "probe": true, "export_env": true,
	"fwsetup": true, "hwmatch": true, "keystatus": true, "setparams": true,
	"videoinfo": true, "smbios": true, "tpm": true, "cutmem": true,
}

func (in *interp) command(c *ctx, lv *level, file string, line int, argv []string, depth int) (int, error) {
	name := argv[0]
	where := fmt.Sprintf("%s:%d", file, line)
	// name=value (GRUB accepts assignments without "set").
	if i := strings.IndexByte(name, '='); i > 0 && isName(name[:i]) && len(argv) == 1 {
		return 0, in.setVar(c, name[:i], name[i+1:])
	}
	if f, ok := in.funcs[name]; ok {
		if in.calls >= MaxCallDepth {
			return 1, fmt.Errorf("%s: function calls nested deeper than %d", where, MaxCallDepth)
		}
		in.calls++
		saved := c.args
		c.args = argv[1:]
		st, err := in.runList(c, lv, file, f.body, depth)
		c.args = saved
		in.calls--
		return st, err
	}
	switch name {
	case "set":
		for _, a := range argv[1:] {
			k, v, ok := strings.Cut(a, "=")
			if !ok || !isName(k) {
				continue
			}
			if err := in.setVar(c, k, v); err != nil {
				return 1, fmt.Errorf("%s: %w", where, err)
			}
		}
		return 0, nil
	case "unset":
		for _, a := range argv[1:] {
			delete(c.vars, a)
		}
		return 0, nil
	case "export":
		for _, a := range argv[1:] {
			c.exported[a] = true
		}
		return 0, nil
	case "true":
		return 0, nil
	case "false":
		return 1, nil
	case "[", "test":
		return in.test(where, argv[1:])
	case "regexp":
		return in.regexp(c, where, argv[1:]), nil
	case "load_env":
		return in.loadEnv(c, where, argv[1:]), nil
	case "search", "search.fs_uuid", "search.fs_label", "search.file":
		in.search(c, where, argv)
		return 0, nil
	case "source", "configfile":
		if len(argv) < 2 {
			return 1, &entry.SyntaxError{File: file, Line: line, Msg: name + " without a file"}
		}
		p, err := resolveGrubPath(argv[1])
		if err != nil {
			in.warn(fmt.Sprintf("%s: %s %q: %v", where, name, argv[1], err))
			return 1, nil
		}
		if name == "source" {
			if _, err := fs.Stat(in.fsys, p); err != nil {
				in.warn(fmt.Sprintf("%s: source %s: %v", where, p, err))
				return 1, nil
			}
			return 0, in.runSourced(c, lv, p, depth+1)
		}
		if lv == nil {
			in.warn(fmt.Sprintf("%s: configfile inside a menu entry not followed", where))
			return 0, nil
		}
		// configfile shows the new file's menu instead of this one.
		nl := &level{}
		if err := in.runFile(newCtx(c), nl, p, depth+1); err != nil {
			return 1, err
		}
		in.replaced = nl
		return 0, nil
	case "eval":
		// grub_cmd_eval (commands/eval.c): the arguments joined by one
		// space, parsed and run in the current scope and environment.
		if in.calls >= MaxCallDepth {
			return 1, fmt.Errorf("%s: eval nested deeper than %d", where, MaxCallDepth)
		}
		nodes, err := parseScript(file, strings.Join(argv[1:], " "))
		if err != nil {
			return 1, toEntryError(err)
		}
		in.calls++
		st, err := in.runList(c, lv, file, nodes, depth)
		in.calls--
		return st, err
	case "blscfg", "bls_import":
		in.fedora = true
		if lv == nil {
			in.warn(fmt.Sprintf("%s: blscfg inside a menu entry ignored", where))
			return 0, nil
		}
		return in.blscfg(c, lv, file, where, argv[1:])
	case "linux", "linux16", "linuxefi":
		if in.cur == nil {
			in.warn(fmt.Sprintf("%s: %s outside a menu entry ignored", where, name))
			return 0, nil
		}
		if len(argv) < 2 {
			in.warn(fmt.Sprintf("%s: %s without a file", where, name))
			return 1, nil
		}
		in.cur.kernelArg = argv[1]
		in.cur.linuxArgs = argv[1:]
		in.cur.initrds = nil
		in.cur.bootable = true
		return 0, nil
	case "initrd", "initrd16", "initrdefi":
		if in.cur == nil {
			in.warn(fmt.Sprintf("%s: %s outside a menu entry ignored", where, name))
			return 0, nil
		}
		if !in.cur.bootable {
			in.warn(fmt.Sprintf("%s: %s before linux (GRUB: \"you need to load the kernel first\")", where, name))
			return 1, nil
		}
		// GRUB's initrd takes "--newc:name:" style options only on
		// some builds; they are not paths.
		in.cur.initrds = nil
		for _, a := range argv[1:] {
			if strings.HasPrefix(a, "--") {
				in.warn(fmt.Sprintf("%s: initrd option %q ignored", where, a))
				continue
			}
			in.cur.initrds = append(in.cur.initrds, a)
		}
		return 0, nil
	case "chainloader", "multiboot", "multiboot2", "kfreebsd", "knetbsd", "kopenbsd", "ntldr", "appleloader", "xnu_kernel", "xnu_kernel64":
		if in.cur != nil {
			in.cur.bootable = false
			in.cur.kernelArg = name
		}
		return 0, nil
	case "return", "break", "continue", "exit", "shift", "menuentry_id_option":
		return 0, nil
	}
	if silent[name] {
		return 0, nil
	}
	in.warn(fmt.Sprintf("%s: unsupported command %q treated as succeeding", where, name))
	return 0, nil
}

func (in *interp) runSourced(c *ctx, lv *level, p string, depth int) error {
	if depth > MaxSourceDepth {
		return fmt.Errorf("%s: source/configfile nested deeper than %d", p, MaxSourceDepth)
	}
	data, err := entry.ReadConfig(in.fsys, p)
	if err != nil {
		return err
	}
	nodes, err := parseScript(p, string(data))
	if err != nil {
		return toEntryError(err)
	}
	_, err = in.runList(c, lv, p, nodes, depth)
	return err
}

func (in *interp) loadEnv(c *ctx, where string, args []string) int {
	file := ""
	var white []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-f" || a == "--file":
			if i+1 < len(args) {
				file = args[i+1]
				i++
			}
		case strings.HasPrefix(a, "--file="):
			file = a[len("--file="):]
		case a == "-s" || a == "--skip-sig":
		default:
			white = append(white, a)
		}
	}
	if file == "" {
		file = c.vars["prefix"] + "/grubenv"
	}
	p, err := resolveGrubPath(file)
	if err != nil {
		in.warn(fmt.Sprintf("%s: load_env %q: %v", where, file, err))
		return 1
	}
	data, err := entry.ReadConfig(in.fsys, p)
	if err != nil {
		in.warn(fmt.Sprintf("%s: load_env: %v", where, err))
		return 1
	}
	vars, err := grubenv.Parse(data)
	if err != nil {
		in.warn(fmt.Sprintf("%s: load_env %s: %v", where, p, err))
		return 1
	}
	for _, v := range vars {
		if len(white) > 0 && !contains(white, v.Name) {
			continue
		}
		if len(v.Value) <= MaxVarSize {
			c.vars[v.Name] = v.Value
		}
	}
	return 0
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// search cannot be run: the device it finds is a property of the machine.
// The config's own filesystem is assumed; a --set variable not yet set
// takes $root's value.
func (in *interp) search(c *ctx, where string, argv []string) {
	v := "root"
	for i, a := range argv {
		if strings.HasPrefix(a, "--set=") {
			v = a[len("--set="):]
		} else if a == "--set" || a == "-s" {
			if i+1 < len(argv) && !strings.HasPrefix(argv[i+1], "-") {
				v = argv[i+1]
			}
		}
	}
	if strings.HasPrefix(argv[0], "search.") && len(argv) >= 3 {
		v = argv[2]
	}
	if _, ok := c.vars[v]; !ok {
		c.vars[v] = c.vars["root"]
	}
	in.warn(fmt.Sprintf("%s: search assumed to find the config's own filesystem; %s=%q", where, v, c.vars[v]))
}

func (in *interp) fileTest(op, p string) bool {
	rp, err := resolveGrubPath(p)
	if err != nil {
		return false
	}
	st, err := fs.Stat(in.fsys, rp)
	if err != nil {
		return false
	}
	switch op {
	case "-d":
		return st.IsDir()
	case "-f":
		return !st.IsDir()
	case "-s":
		return !st.IsDir() && st.Size() > 0
	}
	return true
}

// test is GRUB 2.06's test and [ (grub-core/commands/test.c, grub_cmd_test
// and test_parse), ported rule for rule because guests' scripts rely on
// what GRUB does, not on POSIX: no operands is true (test_parse's "and"
// starts at 1 and it returns or || and), operators are tried at every
// position (three-operand forms first, then two-operand ones, then
// parentheses, "!", -a and -o, and any other word is true when not empty),
// -a binds tighter than -o without precedence climbing, and numbers are
// grub_strtoul's (base 0: 0x hex, leading 0 octal, digits up to the first
// other character). internal/grubemu checks it against GRUB itself.
func (in *interp) test(where string, args []string) (int, error) {
	// grub_cmd_test drops one trailing "]" for test and [ alike, and [
	// without one is not an error.
	if n := len(args); n > 0 && args[n-1] == "]" {
		args = args[:n-1]
	}
	t := &testParser{in: in, args: args}
	v := t.parse()
	if t.err != nil {
		return 1, fmt.Errorf("%s: %w", where, t.err)
	}
	if v {
		return 0, nil
	}
	return 1, nil
}

type testParser struct {
	in    *interp
	args  []string
	n     int
	err   error
	depth int
}

// maxTestNesting bounds parentheses in one test expression: test_parse
// recurses per "(", and a hostile config could nest millions.
const maxTestNesting = 64

// parse is test_parse: one level, up to a ")" or the end.
func (t *testParser) parse() bool {
	and, or, invert := true, false, false
	update := func(v bool) {
		if invert {
			v = !v
		}
		and = and && v
		invert = false
	}
	a := t.args
	for t.n < len(a) {
		i := t.n
		if i+2 < len(a) {
			x, op, y := a[i], a[i+1], a[i+2]
			done := true
			switch op {
			case "=", "==":
				update(x == y)
			case "!=":
				update(x != y)
			case "<":
				update(x < y)
			case "<=":
				update(x <= y)
			case ">":
				update(x > y)
			case ">=":
				update(x >= y)
			case "-eq", "-ge", "-gt", "-le", "-lt", "-ne":
				xi, yi := t.strtosl(x), t.strtosl(y)
				update(map[string]bool{"-eq": xi == yi, "-ge": xi >= yi, "-gt": xi > yi,
					"-le": xi <= yi, "-lt": xi < yi, "-ne": xi != yi}[op])
			case "-pgt", "-plt":
				// Skip the common prefix, then back over its digits.
				k := 0
				for k < len(x) && k < len(y) && x[k] == y[k] {
					k++
				}
				k--
				for k > 0 && k < len(x) && x[k] >= '0' && x[k] <= '9' {
					k--
				}
				k++
				xv, yv := t.strtoul(tail(x, k)), t.strtoul(tail(y, k))
				if op == "-pgt" {
					update(xv > yv)
				} else {
					update(xv < yv)
				}
			default:
				if strings.HasPrefix(op, "-nt") || strings.HasPrefix(op, "-ot") {
					// File times are not something vtpmboot predicts.
					t.fail(fmt.Errorf("test %s compares file modification times, which vtpmboot does not predict", op))
					return false
				}
				done = false
			}
			if done {
				t.n += 3
				continue
			}
		}
		if i+1 < len(a) {
			done := true
			switch a[i] {
			case "-d", "-e", "-f", "-s":
				update(t.in.fileTest(a[i], a[i+1]))
			case "-n":
				update(a[i+1] != "")
			case "-z":
				update(a[i+1] == "")
			default:
				done = false
			}
			if done {
				t.n += 2
				continue
			}
		}
		t.n++
		switch a[i] {
		case ")":
			return or || and
		case "(":
			if t.depth >= maxTestNesting {
				t.fail(fmt.Errorf("test: parentheses nested deeper than %d", maxTestNesting))
				return false
			}
			t.depth++
			update(t.parse())
			t.depth--
		case "!":
			invert = !invert
		case "-a":
		case "-o":
			or = or || and
			and = true
		default:
			update(a[i] != "")
		}
		if t.err != nil {
			return false
		}
	}
	return or || and
}

func tail(s string, k int) string {
	if k >= len(s) {
		return ""
	}
	return s[k:]
}

func (t *testParser) fail(err error) {
	if t.err == nil {
		t.err = err
	}
}

// strtosl is test.c's grub_strtosl: a leading '-' negates grub_strtoul's
// value, and the result is a C int.
func (t *testParser) strtosl(s string) int32 {
	if strings.HasPrefix(s, "-") {
		return int32(-t.strtoul(s[1:]))
	}
	return int32(t.strtoul(s))
}

// strtoul is grub_strtoul with base 0 (strtoulPrefix), 0 when there are
// no digits. A value over 32 bits is refused: there GRUB's platforms
// differ (i386-pc's long is 32 bits and clamps, x86_64-efi's is 64 and
// C's int conversion wraps).
func (t *testParser) strtoul(s string) uint64 {
	n, _ := strtoulPrefix(s)
	if n > 0xffffffff {
		t.fail(fmt.Errorf("test: number %q does not fit 32 bits; GRUB's platforms disagree on it", s))
		return 0
	}
	return n
}

// blscfg mirrors Fedora's blscfg: entries from $blsdir, /loader/entries
// or /boot/loader/entries of $root (here: the config's filesystem), each
// turned into the script blscfg generates and run like any menuentry.
func (in *interp) blscfg(c *ctx, lv *level, file, where string, args []string) (int, error) {
	if len(args) > 0 {
		in.warn(fmt.Sprintf("%s: blscfg %s: arguments ignored, all entries added", where, strings.Join(args, " ")))
	}
	dirs := []string{"loader/entries", "boot/loader/entries"}
	if d, ok := c.vars["blsdir"]; ok {
		rd, err := resolveGrubPath(d)
		if err != nil {
			in.warn(fmt.Sprintf("%s: blsdir %q: %v", where, d, err))
			return 1, nil
		}
		dirs = []string{rd}
	}
	var ents []bls.GRUBEntry
	var err error
	for _, d := range dirs {
		var warns []string
		ents, warns, err = bls.LoadGRUB(in.fsys, d)
		if err == nil {
			for _, w := range warns {
				in.warn(w)
			}
			break
		}
	}
	if err != nil {
		in.warn(fmt.Sprintf("%s: blscfg found no entries directory: %v", where, err))
		return 0, nil
	}
	look := func(n string) (string, bool) { v, ok := c.vars[n]; return v, ok }
	for _, g := range ents {
		var opts string
		has := g.HasOptions
		if has {
			opts = bls.ExpandGRUB(g.Options, look)
		} else if v, ok := c.vars["default_kernelopts"]; ok {
			opts, has = bls.ExpandGRUB(v, look), true
		}
		if opts == "" {
			// expand_val returns NULL for an empty result.
			has = false
		}
		var src strings.Builder
		src.WriteString("load_video\nset gfxpayload=keep\ninsmod gzio\n")
		src.WriteString("linux ($root)" + g.Linux)
		if has {
			src.WriteString(" " + opts)
		}
		src.WriteString("\n")
		if len(g.Initrds) > 0 {
			src.WriteString("initrd")
			for _, i := range g.Initrds {
				src.WriteString(" ($root)" + i)
			}
			src.WriteString("\n")
		}
		it := &item{file: g.File, line: g.Line, title: g.Title, id: g.ID, src: src.String(), args: []string{g.Title}}
		if err := in.addItem(lv, it); err != nil {
			return 1, err
		}
	}
	return 0, nil
}

// flatten appends lv's bootable entries to m in menu order.
func (in *interp) flatten(m *entry.Menu, lv *level, prefix string) {
	for i, it := range lv.items {
		mp := prefix + strconv.Itoa(i)
		if it.sub != nil {
			in.flatten(m, it.sub, mp+">")
			continue
		}
		if !it.bootable {
			if it.kernelArg != "" {
				in.warn(fmt.Sprintf("%s:%d: entry %q uses %s; not bootable by vtpmboot", it.file, it.line, it.title, it.kernelArg))
			} else {
				in.warn(fmt.Sprintf("%s:%d: entry %q has no linux command", it.file, it.line, it.title))
			}
			continue
		}
		e := entry.Entry{Format: entry.GRUB2, Config: it.file, Line: it.line, Index: len(m.Entries),
			MenuPath: mp, Title: it.title, ID: it.id, Initrds: []string{}}
		k, err := resolveGrubPath(it.kernelArg)
		if err != nil {
			in.warn(fmt.Sprintf("%s:%d: entry %q: kernel: %v", it.file, it.line, it.title, err))
			continue
		}
		e.Kernel = k
		bad := false
		for _, ir := range it.initrds {
			r, err := resolveGrubPath(ir)
			if err != nil {
				in.warn(fmt.Sprintf("%s:%d: entry %q: initrd: %v", it.file, it.line, it.title, err))
				bad = true
				break
			}
			e.Initrds = append(e.Initrds, r)
		}
		if bad {
			continue
		}
		e.Cmdline = "BOOT_IMAGE=" + LoaderCmdline(it.linuxArgs)
		m.Entries = append(m.Entries, e)
	}
}

// LoaderCmdline is grub_create_loader_cmdline (grub-core/lib/cmdline.c):
// arguments joined by single spaces; '\', '\” and '"' escaped with a
// backslash (GRUB 2.06 as Debian 12 ships it, checked against the real
// loader by e2e/loader; later GRUB leaves a \xHH sequence alone); an argument
// containing a space wrapped in double quotes. GRUB's linux loader puts
// "BOOT_IMAGE=" before it, with the kernel path as the first argument.
func LoaderCmdline(args []string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		space := strings.IndexByte(a, ' ') >= 0
		if space {
			b.WriteByte('"')
		}
		for j := 0; j < len(a); j++ {
			ch := a[j]
			if ch == '\\' || ch == '\'' || ch == '"' {
				b.WriteByte('\\')
			}
			b.WriteByte(ch)
		}
		if space {
			b.WriteByte('"')
		}
	}
	return b.String()
}

// chooseDefault follows GRUB's normal mode: $default (after the script)
// names an item by number, title or id, with "a>b" descending into
// submenus; anything else, or nothing, means item 0. Submenus run in a
// new context, so their default is their own $default or 0.
func (in *interp) chooseDefault(m *entry.Menu, lv *level) {
	def := lv.ctx.vars["default"]
	reason := "no default set: first entry"
	if def != "" {
		reason = fmt.Sprintf("default=%q", def)
	}
	var mp string
	cur := lv
	parts := strings.Split(def, ">")
	if def == "" {
		parts = nil
	}
	ok := true
	for {
		idx := 0
		if len(parts) > 0 {
			idx = in.findItem(cur, parts[0])
			parts = parts[1:]
			if idx < 0 {
				ok = false
				idx = 0
			}
		} else if cur != lv {
			if d := cur.ctx.vars["default"]; d != "" {
				if idx = in.findItem(cur, d); idx < 0 {
					idx = 0
				}
			}
		}
		if idx >= len(cur.items) {
			ok = false
			idx = 0
		}
		if len(cur.items) == 0 {
			break
		}
		mp += strconv.Itoa(idx)
		it := cur.items[idx]
		if it.sub == nil {
			break
		}
		mp += ">"
		cur = it.sub
	}
	if !ok {
		in.warn(fmt.Sprintf("default=%q names no menu item; GRUB falls back to entry 0", def))
		reason += " names nothing: entry 0"
		mp = firstPath(lv)
	}
	for i, e := range m.Entries {
		if e.MenuPath == mp {
			m.Default = i
			m.DefaultReason = reason + " -> " + mp
			m.Waits = in.waits(lv, mp)
			return
		}
	}
	// GRUB runs that item (a chainloader, a multiboot kernel) and boots
	// it or stops with an error; booting some other entry instead would
	// be booting what the loader would not.
	m.Default = 0
	m.DefaultReason = reason + " -> " + mp
	m.Unbootable = fmt.Sprintf("the default menu item %s is %s", mp, in.describe(lv, mp))
}

// describe names the item at mp and why vtpmboot cannot boot it.
func (in *interp) describe(lv *level, mp string) string {
	cur := lv
	var it *item
	for _, part := range strings.Split(mp, ">") {
		i, _ := strconv.Atoi(part)
		if cur == nil || i >= len(cur.items) {
			return "missing"
		}
		it = cur.items[i]
		cur = it.sub
	}
	switch {
	case it.sub != nil:
		return fmt.Sprintf("submenu %q (%s:%d), which has no Linux entry", it.title, it.file, it.line)
	case it.kernelArg != "" && !it.bootable:
		return fmt.Sprintf("%q (%s:%d), which uses %s", it.title, it.file, it.line, it.kernelArg)
	}
	return fmt.Sprintf("%q (%s:%d), which loads no Linux kernel vtpmboot can read", it.title, it.file, it.line)
}

// fallbacks maps $fallback (space-separated top-level item numbers, read
// one by one as grub-core/normal/menu.c does) to indexes into m.Entries.
func (in *interp) fallbacks(m *entry.Menu, lv *level) {
	v := strings.Fields(lv.ctx.vars["fallback"])
	for _, f := range v {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			in.warn(fmt.Sprintf("fallback %q is not an item number: GRUB stops reading the list there", f))
			return
		}
		for i, e := range m.Entries {
			if e.MenuPath == f {
				m.Fallback = append(m.Fallback, i)
			}
		}
	}
}

// waits says why GRUB's normal mode would not boot the item at path mp
// unattended, or "" when it would. Two rules (grub-core/normal/menu.c,
// grub-core/normal/auth.c in GRUB 2.06):
//   - the menu's $timeout after the script is GRUB's only way to boot
//     without a key: unset, empty, negative or not a number (grub_strtoul
//     fails, so grub_menu_get_timeout returns -1) means the menu waits;
//   - with $superusers set (to anything, even ""), executing an item that
//     is not --unrestricted asks for a user name and password: every item
//     on the default's path, the submenus included.
func (in *interp) waits(lv *level, mp string) string {
	v, ok := lv.ctx.vars["timeout"]
	if !ok {
		return "the menu has no timeout (timeout is never set)"
	}
	if t := strings.TrimLeft(v, " \t"); t == "" || t[0] < '0' || t[0] > '9' {
		return fmt.Sprintf("the menu never times out (timeout=%q)", v)
	}
	if _, ok := lv.ctx.vars["superusers"]; !ok {
		return ""
	}
	cur := lv
	for _, part := range strings.Split(mp, ">") {
		i, _ := strconv.Atoi(part)
		if cur == nil || i >= len(cur.items) {
			break
		}
		it := cur.items[i]
		if !it.unrestricted {
			return fmt.Sprintf("superusers is set and %s %q (%s:%d) is not --unrestricted, so GRUB asks for a password",
				map[bool]string{true: "submenu", false: "entry"}[it.submenu], it.title, it.file, it.line)
		}
		cur = it.sub
	}
	return ""
}

func firstPath(lv *level) string {
	mp := ""
	for len(lv.items) > 0 {
		mp += "0"
		if lv.items[0].sub == nil {
			return mp
		}
		mp += ">"
		lv = lv.items[0].sub
	}
	return mp
}

// findItem is GRUB's get_entry_number: a decimal number, else the first
// item whose title or id equals s.
func (in *interp) findItem(lv *level, s string) int {
	if in.fedora {
		// Fedora's GRUB (the one with blscfg) patches get_entry_number:
		// an id first, then a title, then a number that must be the
		// whole value (rhboot/grub2 fedora-45, get_entry_number_helper),
		// so a BLS id starting with a digit names its entry.
		for i, it := range lv.items {
			if it.id != "" && it.id == s {
				return i
			}
		}
		for i, it := range lv.items {
			if it.title == s {
				return i
			}
		}
		if n, err := strconv.ParseUint(s, 0, 64); err == nil && n < uint64(len(lv.items)) && s[0] >= '0' && s[0] <= '9' {
			return int(n)
		}
		return -1
	}
	// get_entry_number (normal/menu.c, GRUB 2.06 as Debian ships it):
	// grub_strtoul base 0 first, which takes the leading digits and
	// ignores what follows ("01x" is 1, "0x2" is 2, " 1" is 1); only a
	// value with no digits at all is looked up as a title or id.
	// Checked with grub-emu (the fuzzer found it; testdata/grubemu).
	if n, ok := strtoulPrefix(s); ok {
		if n < uint64(len(lv.items)) {
			return int(n)
		}
		return -1
	}
	for i, it := range lv.items {
		if it.title == s || (it.id != "" && it.id == s) {
			return i
		}
	}
	return -1
}

// strtoulPrefix is grub_strtoul(s, 0, 0): white space skipped, "0x" hex,
// "0" then an octal digit octal, then digits up to the first other
// character; ok is false when there is no digit. An overflow (GRUB's
// OUT_OF_RANGE error) gives a value no menu has.
func strtoulPrefix(s string) (uint64, bool) {
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	base := uint64(10)
	if len(s) > 1 && s[0] == '0' {
		if s[1] == 'x' {
			base, s = 16, s[2:]
		} else if s[1] >= '0' && s[1] <= '7' {
			base = 8
		}
	}
	var n uint64
	found := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		d := uint64(99)
		switch {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case c >= 'a' && c <= 'z':
			d = uint64(c-'a') + 10
		}
		if d >= base {
			break
		}
		found = true
		if n > (^uint64(0)-d)/base {
			return ^uint64(0), true
		}
		n = n*base + d
	}
	return n, found
}

// regexp is GRUB's regexp command (commands/regexp.c): status 0 when
// STRING matches the POSIX extended REGEXP; each --set [N:]VAR stores
// submatch N (without N, the i-th --set stores submatch i). Go's POSIX
// (leftmost-longest) mode stands in for GRUB's gnulib regcomp; a pattern
// Go cannot compile is a warning and a failed match.
func (in *interp) regexp(c *ctx, where string, args []string) int {
	type set struct {
		n    int
		name string
	}
	var sets []set
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		v, isSet := "", false
		switch {
		case a == "--":
			// grub_arg_parse (lib/arg.c): the rest are not options
			rest = append(rest, args[i+1:]...)
			i = len(args)
		case a == "--set" || a == "-s":
			if i+1 < len(args) {
				v, isSet = args[i+1], true
				i++
			}
		case strings.HasPrefix(a, "--set="):
			v, isSet = a[len("--set="):], true
		case len(a) > 1 && a[0] == '-':
			// regexp is an extcmd: GRUB's option parser takes every
			// word starting with '-' as an option and fails the
			// command on one it does not know (checked with grub-emu).
			in.warn(fmt.Sprintf("%s: regexp: unknown option %q; the command fails, as in GRUB", where, a))
			return 1
		default:
			rest = append(rest, a)
		}
		if isSet {
			// set_matches (commands/regexp.c): a name without N:
			// takes submatch 1, whichever --set it is.
			s := set{n: 1, name: v}
			if num, name, ok := strings.Cut(v, ":"); ok {
				n, err := strconv.Atoi(num)
				if err != nil || n < 0 {
					in.warn(fmt.Sprintf("%s: regexp --set %q: bad submatch number", where, v))
					return 1
				}
				s = set{n: n, name: name}
			}
			sets = append(sets, s)
		}
	}
	if len(rest) != 2 {
		in.warn(fmt.Sprintf("%s: regexp needs REGEXP and STRING, got %d arguments", where, len(rest)))
		return 1
	}
	re, err := goregexp.CompilePOSIX(rest[0])
	if err != nil {
		in.warn(fmt.Sprintf("%s: regexp %q: %v; taken as not matching", where, rest[0], err))
		return 1
	}
	m := re.FindStringSubmatchIndex(rest[1])
	if m == nil {
		return 1
	}
	for _, s := range sets {
		if !isName(s.name) {
			continue
		}
		// A submatch the pattern does not have, or one that took no
		// part in the match, unsets the variable (set_matches).
		if 2*s.n+1 >= len(m) || m[2*s.n] < 0 {
			delete(c.vars, s.name)
			continue
		}
		if err := in.setVar(c, s.name, rest[1][m[2*s.n]:m[2*s.n+1]]); err != nil {
			return 1
		}
	}
	return 0
}
