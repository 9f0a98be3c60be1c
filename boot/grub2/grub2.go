// Package grub2 predicts what GRUB 2 boots from a grub.cfg: it runs the
// script with a small interpreter of GRUB's shell-like language (variables,
// if/elif/else, functions, for, source/configfile, load_env, blscfg) and
// runs each menu entry's body to find its linux/initrd commands, building
// the command line exactly as GRUB's linux loader does. docs/config-grub2.md
// lists every rule and why u-root's parser is not used.
package grub2

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/vtpmboot/vtpmboot/boot/entry"
)

// Limits against hostile configs.
const (
	MaxSourceDepth = 8       // nested source/configfile
	MaxCallDepth   = 32      // nested function calls
	MaxSteps       = 20000   // commands executed in total
	MaxWork        = 8 << 20 // bytes produced by expansion in total
	MaxVarSize     = 1 << 16 // bytes in one variable's value
	MaxItems       = 4096    // menu items
)

// DefaultRoot is the $root assumed when the caller does not know GRUB's
// device name for the partition holding the config.
const DefaultRoot = "hd0,msdos1"

// Options are what GRUB knows at run time and a config file does not.
type Options struct {
	// Root is GRUB's device name for the partition holding the config
	// ("hd0,msdos1", "hd0,gpt2"); it ends up in BOOT_IMAGE= whenever a
	// path is written as ($root)/... (every Fedora blscfg entry). Empty
	// means DefaultRoot, with a warning if it was used.
	Root string
}

// Parse runs config (e.g. "boot/grub/grub.cfg") from fsys with default
// Options.
func Parse(fsys fs.FS, config string) (*entry.Menu, error) {
	return ParseWith(fsys, config, Options{})
}

// ParseWith is Parse with run-time facts supplied.
func ParseWith(fsys fs.FS, config string, opt Options) (*entry.Menu, error) {
	config = strings.TrimPrefix(path.Clean("/"+config), "/")
	root := opt.Root
	in := &interp{fsys: fsys, rootDefault: root == ""}
	if root == "" {
		root = DefaultRoot
	}
	in.root0 = root
	ctx := newCtx(nil)
	dir := path.Dir(config)
	pre := "(" + root + ")/" + strings.TrimPrefix(dir, ".")
	pre = strings.TrimSuffix(pre, "/")
	// What GRUB's kernel and normal mode set and export before the
	// config runs (i386-pc build, GRUB 2.06 features).
	for k, v := range map[string]string{
		"root": root, "prefix": pre, "cmdpath": "(" + root + ")",
		"config_directory": pre, "config_file": pre + "/" + path.Base(config),
		"grub_platform": "pc", "grub_cpu": "i386",
		"feature_menuentry_id": "y", "feature_all_video_module": "y",
		"feature_platform_search_hint": "y", "feature_default_font_path": "y",
		"feature_timeout_style": "y", "feature_200_find_partuuid": "y",
		"feature_nativedisk_cmd": "y", "feature_chainloader_bpb": "y",
		"feature_ntldr": "y",
	} {
		ctx.vars[k] = v
		ctx.exported[k] = true
	}
	lv := &level{}
	if err := in.runFile(ctx, lv, config, 0); err != nil {
		return nil, err
	}
	if in.replaced != nil {
		lv = in.replaced
	}
	m := &entry.Menu{Format: entry.GRUB2, Config: config}
	in.flatten(m, lv, "")
	if len(m.Entries) == 0 {
		// The reason is usually in a warning (a kernel path with a NUL
		// byte or invalid UTF-8, a linux command outside any entry):
		// say it, or the admin is left guessing.
		why := ""
		if len(in.warnings) > 0 {
			why = "; " + strings.Join(in.warnings[:min(len(in.warnings), 3)], "; ")
		}
		return nil, fmt.Errorf("%s: no bootable menu entries (menuentry with a linux command)%s", config, why)
	}
	in.chooseDefault(m, lv)
	in.fallbacks(m, lv)
	if in.rootUsed && in.rootDefault && !in.rootSet {
		in.warn(fmt.Sprintf("$root was never set by the config; assumed %q (pass Options.Root)", DefaultRoot))
	}
	m.Warnings = in.warnings
	return m, nil
}

// ctx is a GRUB environment context: variables plus which are exported.
// submenu and configfile open a new one holding only exported variables.
type ctx struct {
	vars     map[string]string
	exported map[string]bool
	args     []string // positional parameters
}

func newCtx(from *ctx) *ctx {
	c := &ctx{vars: map[string]string{}, exported: map[string]bool{}}
	if from != nil {
		for k := range from.exported {
			if v, ok := from.vars[k]; ok {
				c.vars[k] = v
			}
			c.exported[k] = true
		}
	}
	return c
}

func (c *ctx) clone() *ctx {
	n := &ctx{vars: make(map[string]string, len(c.vars)), exported: make(map[string]bool, len(c.exported)), args: c.args}
	for k, v := range c.vars {
		n.vars[k] = v
	}
	for k := range c.exported {
		n.exported[k] = true
	}
	return n
}

// level is one menu (top level or a submenu's).
type level struct {
	items []*item
	ctx   *ctx // environment when the menu's script finished
	// defaultSet records where "default" came from for DefaultReason.
}

type item struct {
	file    string
	line    int
	title   string
	id      string
	submenu bool
	// unrestricted is --unrestricted: GRUB boots the item without asking
	// for a superuser's password.
	unrestricted bool
	body         []node
	args         []string // the menuentry's extra arguments become $1.. in the body
	sub          *level
	// for blscfg entries, the generated body source
	src string
	// result of running the body
	kernelArg string
	linuxArgs []string
	initrds   []string
	bootable  bool
}

type interp struct {
	fsys        fs.FS
	root0       string
	rootDefault bool
	rootUsed    bool
	rootSet     bool
	warnings    []string
	seen        map[string]bool
	funcs       map[string]*funcNode
	steps       int
	items       int
	work        int
	calls       int
	replaced    *level
	// fedora is set once blscfg ran: only Fedora's GRUB has it, and its
	// default lookup differs from upstream's (findItem).
	fedora bool
	// cur is the entry whose body is running, nil at menu level.
	cur *item
}

func (in *interp) warn(s string) {
	if in.seen == nil {
		in.seen = map[string]bool{}
	}
	if !in.seen[s] {
		in.seen[s] = true
		in.warnings = append(in.warnings, s)
	}
}

func toEntryError(err error) error {
	var se *syntaxError
	if errors.As(err, &se) {
		return &entry.SyntaxError{File: se.file, Line: se.line, Msg: se.msg}
	}
	return err
}

// resolveGrubPath maps a GRUB path ("(dev)/x", "/x", "$prefix/x" already
// expanded) into the config's filesystem.
func resolveGrubPath(p string) (string, error) { return entry.ResolvePath(".", p) }

func (in *interp) runFile(c *ctx, lv *level, file string, depth int) error {
	if depth > MaxSourceDepth {
		return fmt.Errorf("%s: source/configfile nested deeper than %d", file, MaxSourceDepth)
	}
	data, err := entry.ReadConfig(in.fsys, file)
	if err != nil {
		return err
	}
	nodes, err := parseScript(file, string(data))
	if err != nil {
		return toEntryError(err)
	}
	if in.funcs == nil {
		in.funcs = map[string]*funcNode{}
	}
	_, err = in.runList(c, lv, file, nodes, depth)
	if err != nil {
		return err
	}
	lv.ctx = c
	// Entry bodies run when chosen, in the environment the script left.
	for _, it := range lv.items {
		if it.submenu {
			continue
		}
		if err := in.runEntry(lv.ctx, it, depth); err != nil {
			return err
		}
	}
	return nil
}

func (in *interp) runEntry(c *ctx, it *item, depth int) error {
	ec := c.clone()
	ec.vars["chosen"] = it.title
	ec.args = it.args
	body := it.body
	if it.src != "" {
		nodes, err := parseScript(it.file, it.src)
		if err != nil {
			in.warn(fmt.Sprintf("%s: generated entry does not parse: %v", it.file, err))
			return nil
		}
		body = nodes
	}
	prev := in.cur
	in.cur = it
	_, err := in.runList(ec, nil, it.file, body, depth)
	in.cur = prev
	return err
}

// runList executes nodes and returns the last status (0 = success).
func (in *interp) runList(c *ctx, lv *level, file string, nodes []node, depth int) (int, error) {
	st := 0
	for _, n := range nodes {
		var err error
		st, err = in.run(c, lv, file, n, depth)
		if err != nil {
			return st, err
		}
		if in.replaced != nil && lv != nil {
			return st, nil
		}
	}
	return st, nil
}

func (in *interp) run(c *ctx, lv *level, file string, n node, depth int) (int, error) {
	in.steps++
	if in.steps > MaxSteps {
		return 1, fmt.Errorf("%s:%d: more than %d commands executed; giving up", file, n.nodeLine(), MaxSteps)
	}
	switch n := n.(type) {
	case *ifNode:
		for i, cond := range n.conds {
			st, err := in.runList(c, lv, file, cond, depth)
			if err != nil {
				return st, err
			}
			if st == 0 {
				return in.runList(c, lv, file, n.bodies[i], depth)
			}
		}
		return in.runList(c, lv, file, n.els, depth)
	case *funcNode:
		in.funcs[n.name] = n
		return 0, nil
	case *forNode:
		var items []string
		for _, w := range n.items {
			a, err := in.expand(c, w)
			if err != nil {
				return 1, fmt.Errorf("%s:%d: %w", file, n.line, err)
			}
			items = append(items, a...)
		}
		st := 0
		for _, v := range items {
			c.vars[n.name] = v
			var err error
			if st, err = in.runList(c, lv, file, n.body, depth); err != nil {
				return st, err
			}
		}
		return st, nil
	case *loopNode:
		// grub_script_execute_cmdwhile: the condition's status decides,
		// the loop's status is the body's last. MaxSteps bounds a loop
		// that never ends (GRUB itself would hang there).
		st := 0
		for {
			cst, err := in.runList(c, lv, file, n.cond, depth)
			if err != nil {
				return cst, err
			}
			if (cst == 0) != (n.kw == "while") {
				return st, nil
			}
			if st, err = in.runList(c, lv, file, n.body, depth); err != nil {
				return st, err
			}
		}
	case *menuNode:
		return in.menu(c, lv, file, n, depth)
	case *cmdNode:
		var argv []string
		for _, w := range n.words {
			a, err := in.expand(c, w)
			if err != nil {
				return 1, fmt.Errorf("%s:%d: %w", file, n.line, err)
			}
			argv = append(argv, a...)
		}
		if len(argv) == 0 {
			return 0, nil
		}
		st, err := in.command(c, lv, file, n.line, argv, depth)
		c.vars["?"] = strconv.Itoa(st)
		return st, err
	}
	return 0, nil
}

func (in *interp) menu(c *ctx, lv *level, file string, n *menuNode, depth int) (int, error) {
	kw := "menuentry"
	if n.submenu {
		kw = "submenu"
	}
	if lv == nil {
		in.warn(fmt.Sprintf("%s:%d: %s inside a menu entry ignored", file, n.line, kw))
		return 0, nil
	}
	var argv []string
	for _, w := range n.args {
		a, err := in.expand(c, w)
		if err != nil {
			return 1, fmt.Errorf("%s:%d: %w", file, n.line, err)
		}
		argv = append(argv, a...)
	}
	it := &item{file: file, line: n.line, submenu: n.submenu, body: n.body}
	// Options GRUB's menuentry accepts; only --id matters here.
	var rest []string
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		switch {
		case a == "--id" || a == "--class" || a == "--users" || a == "--hotkey":
			if i+1 < len(argv) {
				if a == "--id" {
					it.id = argv[i+1]
				}
				i++
			}
		case strings.HasPrefix(a, "--id="):
			it.id = a[len("--id="):]
		case strings.HasPrefix(a, "--class=") || strings.HasPrefix(a, "--users=") || strings.HasPrefix(a, "--hotkey="):
		case a == "--unrestricted":
			it.unrestricted = true
		case a == "--source":
		default:
			rest = append(rest, a)
		}
	}
	if len(rest) == 0 {
		return 1, &entry.SyntaxError{File: file, Line: n.line, Msg: kw + " without a title"}
	}
	it.title = rest[0]
	it.args = rest
	if err := in.addItem(lv, it); err != nil {
		return 1, err
	}
	if n.submenu {
		// grub_menu_execute_entry runs a submenu's body in a new scope
		// holding its arguments, like an entry's.
		sc := newCtx(c)
		sc.args = append([]string{}, it.args...)
		sub := &level{}
		if _, err := in.runList(sc, sub, file, n.body, depth); err != nil {
			return 1, err
		}
		sub.ctx = sc
		for _, s := range sub.items {
			if !s.submenu {
				if err := in.runEntry(sc, s, depth); err != nil {
					return 1, err
				}
			}
		}
		it.sub = sub
	}
	return 0, nil
}

func (in *interp) addItem(lv *level, it *item) error {
	in.items++
	if in.items > MaxItems {
		return fmt.Errorf("%s:%d: more than %d menu items", it.file, it.line, MaxItems)
	}
	lv.items = append(lv.items, it)
	return nil
}
