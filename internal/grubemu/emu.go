// Package grubemu runs GRUB 2.06's own script engine, Debian's grub-emu, as
// an oracle for boot/grub2: a grub.cfg and the files next to it go on a
// disk image, grub-emu runs the config with GRUB's lexer, parser, test,
// regexp, eval, source, menus and submenus, and each menu entry GRUB would
// boot reports what it passes to linux and initrd through GRUB's own echo.
//
// How: grub-emu has no linux loader (linux and initrd are not in
// /usr/lib/grub/x86_64-emu/command.lst), so a script function of that name
// is what an entry's "linux" runs (grub_script_execute_cmdline looks up
// commands first, then functions). A probe is a file run with configfile,
// which gives it a fresh environment context and menu (grub_cmd_source in
// grub-core/commands/configfile.c): it sets what GRUB's kernel and normal
// mode would set for the disk, sources the guest's config, prints the menu
// variables, then sets timeout=0 (and default=PATH to boot one entry) so
// normal mode's grub_menu_execute_entry boots it unattended, as the stub's
// prediction assumes. Nothing gets loaded, so GRUB prints "Failed to boot"
// and redraws the nested menu; ESC leaves it and the next probe runs. Each
// probe of every script runs in the one process, isolated by its context.
//
// What grub-emu cannot show, left to the QEMU differential (e2e/loader):
// real devices (search over a disk's real filesystem UUIDs and labels,
// partition tables beyond one msdos partition), save_env writes to a real
// disk's blocks, video and fonts, the kernel loader itself (what reaches
// the kernel after "linux": the command line is rebuilt here from GRUB's
// grub_create_loader_cmdline in grub-core/lib/cmdline.c), and anything that
// waits for a person.
package grubemu

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// ModDir is where Debian's grub-emu package puts the x86_64-emu modules.
const ModDir = "/usr/lib/grub/x86_64-emu"

// Script is one guest configuration to run.
type Script struct {
	// Files are the partition's files, by path without a leading slash.
	Files map[string][]byte
	// Config is the grub.cfg's path among Files ("boot/grub/grub.cfg").
	Config string
	// Probes are the menu paths to boot ("2", "1>0"); "" boots what GRUB
	// picks unattended (the config's default).
	Probes []string
}

// Call is one linux or initrd call: $chosen when it ran, and its arguments.
type Call struct {
	Chosen string
	Args   []string
}

// Boot is what one probe saw.
type Boot struct {
	Probe string
	// Vars are the menu variables after the config ran (before the probe
	// overrides timeout and default); GRUB's script cannot tell an unset
	// variable from an empty one, so neither can this.
	Vars   map[string]string
	Linux  []Call
	Initrd []Call
	// Errors are GRUB's "error: ..." lines.
	Errors []string
	// Attempts counts the boots GRUB tried in the probe (each ends in
	// "Failed to boot", as nothing gets loaded here); Linux and Initrd
	// hold the first one's calls, the one a real GRUB would have booted
	// (a later one runs only because a configfile's nested menu booted
	// first and returned).
	Attempts int
	booting  bool
	// Auth is set when GRUB asked for a user name: the entry is locked
	// and an unattended boot stops there.
	Auth bool
	// Output is everything else GRUB printed, for diagnostics.
	Output []string
}

// Root is GRUB's device for script i's partition: one disk per script, in
// the device map.
func Root(i int) string { return fmt.Sprintf("hd%d,msdos1", i) }

// menuVars are printed after the config ran: what normal mode's menu code
// reads (grub-core/normal/menu.c) and what scripts use to pick a default.
var menuVars = []string{"default", "timeout", "timeout_style", "fallback", "next_entry", "saved_entry", "superusers", "pager"}

// preload are modules whose commands a config may run. They are loaded
// before a probe moves $prefix onto the guest's disk, where GRUB's
// autoloader would look for them and find nothing.
var preload = []string{"part_msdos", "tar", "test", "regexp", "echo", "loadenv", "configfile",
	"eval", "true",
	"ls", "cat", "halt", "keystatus", "probe", "minicmd", "extcmd", "normal", "terminfo", "gettext", "read"}

// noVideo are modules left out of grub-emu's module directory: with them,
// a config's "terminal_output gfxterm" (every grub-mkconfig config) makes
// grub-emu open a graphical window (SDL, or libcaca on the terminal) and
// the run never ends. Without them the command fails, as it does on a
// machine without video, and the script goes on.
var noVideo = map[string]bool{"all_video.mod": true, "gfxmenu.mod": true, "gfxterm.mod": true,
	"gfxterm_background.mod": true, "gfxterm_menu.mod": true, "sdl.mod": true, "video_fb.mod": true,
	"videotest.mod": true, "videotest_checksum.mod": true}

func linkModules(dst string) error {
	if err := os.Mkdir(dst, 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(ModDir)
	if err != nil {
		return fmt.Errorf("grub-emu modules: %w", err)
	}
	for _, e := range ents {
		if noVideo[e.Name()] {
			continue
		}
		if err := os.Symlink(filepath.Join(ModDir, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// search and sleep are built into grub-emu, not modules, so a probe cannot
// replace them with functions: search scans the one tar partition (which
// has no UUID or label, so a config's search by UUID fails and leaves
// $root as the probe set it, the config's own partition, as boot/grub2
// assumes), and "sleep --interruptible N" really sleeps.

// Run runs scripts under grub-emu in one process and returns each
// script's probes' results, in order.
func Run(ctx context.Context, scripts []Script) ([][]Boot, error) {
	dir, err := os.MkdirTemp("", "grubemu-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := linkModules(filepath.Join(dir, "x86_64-emu")); err != nil {
		return nil, err
	}
	var devmap, driver strings.Builder
	driver.WriteString("terminfo -u -g 80x12 console\n")
	for _, m := range preload {
		driver.WriteString("insmod " + m + "\n")
	}
	for i, s := range scripts {
		img := filepath.Join(dir, fmt.Sprintf("d%d.img", i))
		if err := writeDisk(img, s.Files); err != nil {
			return nil, fmt.Errorf("script %d: disk: %w", i, err)
		}
		fmt.Fprintf(&devmap, "(hd%d) %s\n", i, img)
		for j, p := range s.Probes {
			name := filepath.Join(dir, fmt.Sprintf("p%d_%d.cfg", i, j))
			if err := os.WriteFile(name, []byte(probe(Root(i), s.Config, p)), 0o644); err != nil {
				return nil, err
			}
			fmt.Fprintf(&driver, "echo \"@@P[%d %d]\"\nconfigfile (host)%s\n", i, j, name)
		}
	}
	driver.WriteString("echo \"@@P[end]\"\nhalt\n")
	if err := os.WriteFile(filepath.Join(dir, "grub.cfg"), []byte(driver.String()), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "device.map"), []byte(devmap.String()), 0o644); err != nil {
		return nil, err
	}
	out, err := runEmu(ctx, dir)
	if err != nil {
		return nil, err
	}
	return parse(out, scripts)
}

// GRUB's terminal wraps at its width (grub_terminfo_putchar); an echoed
// argument must fit on one line, and a wide terminal makes every menu
// redraw slow, so the calls widen it only while they print. 4200 columns
// hold the longest command line x86 Linux takes (COMMAND_LINE_SIZE 2048
// in the kernels GRUB 2.06 loads, 4096 at most) and an argument of it.
const (
	wide   = "set pager=0 ; terminfo -u -g 4200x12 console"
	narrow = "terminfo -u -g 80x12 console"
)

// probe is the file configfile runs for one probe of a script on root.
func probe(root, config, path string) string {
	var b strings.Builder
	// What a call passes, one argument a line; "@@." ends the call so an
	// argument holding a newline is still recovered whole.
	for _, f := range []string{"linux", "linux16", "linuxefi"} {
		fmt.Fprintf(&b, "function %s { %s ; echo \"@@L[$chosen]\" ; for a in \"$@\" ; do echo \"@@A[$a]\" ; done ; echo \"@@.\" ; %s ; }\n", f, wide, narrow)
	}
	for _, f := range []string{"initrd", "initrd16", "initrdefi"} {
		fmt.Fprintf(&b, "function %s { %s ; echo \"@@I[$chosen]\" ; for a in \"$@\" ; do echo \"@@A[$a]\" ; done ; echo \"@@.\" ; %s ; }\n", f, wide, narrow)
	}
	dir := strings.TrimSuffix(filepath.Dir("/"+strings.TrimPrefix(config, "/")), "/")
	// What GRUB's kernel and normal mode set on an i386-pc boot from this
	// disk (grub_machine_get_bootlocation, grub_set_prefix_and_root,
	// normal.c); boot/grub2 assumes the same.
	pre := "(" + root + ")" + dir
	fmt.Fprintf(&b, "set root=%q\nset prefix=%q\nset cmdpath=%q\nset config_directory=%q\nset config_file=%q\nset grub_platform=pc\nset grub_cpu=i386\nexport root prefix cmdpath config_directory config_file grub_platform grub_cpu\nunset default\nunset timeout\nunset fallback\nunset chosen\n",
		root, pre, "("+root+")", pre, pre+"/"+filepath.Base(config))
	fmt.Fprintf(&b, "source %q\n", "("+root+")/"+strings.TrimPrefix(config, "/"))
	b.WriteString(wide + "\n")
	for _, v := range menuVars {
		fmt.Fprintf(&b, "echo \"@@V[%s]=[${%s}]\"\n", v, v)
	}
	b.WriteString(narrow + "\n")
	// A locked entry would stop at a password prompt (is_authenticated
	// in grub-core/normal/auth.c reads $superusers when the entry runs):
	// $superusers is reported above and cleared so the entry's commands
	// still show.
	// With timeout_style hidden or countdown, GRUB 2.06 takes about 3 s
	// here to boot even with timeout=0 (measured); the style changes
	// nothing about what boots at timeout 0, so it goes too.
	b.WriteString("set timeout=0\nunset timeout_style\nunset fallback\nunset superusers\nset pager=0\n")
	if path != "" {
		fmt.Fprintf(&b, "set default=%q\n", path)
	}
	return b.String()
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[a-zA-Z]|\x1b[()][0-9A-Za-z]|\x1b[=>]`)

// prompts are what GRUB waits for a key at, and the key the harness gives.
var prompts = []struct{ text, key string }{
	{"Press any key to continue", "\r"},
	// a redrawn (nested) menu: the probe's boot is over; ESC leaves it
	{"ESC to return", "\x1b"},
	// the pager (a config's "set pager=1")
	{"--MORE--", " "},
	// a locked entry: nobody answers, as nobody would at an unattended boot
	{"Enter username:", "\r"},
	{"Enter password:", "\r"},
}

// runEmu runs grub-emu on dir under a pseudo-terminal, answering GRUB's
// prompts: a key for "Press any key to continue", ESC for a redrawn menu
// (a probe's boot is over).
func runEmu(ctx context.Context, dir string) ([]byte, error) {
	master, slave, err := openPTY()
	if err != nil {
		return nil, err
	}
	defer master.Close()
	cmd := exec.CommandContext(ctx, "grub-emu", "-d", dir, "-m", filepath.Join(dir, "device.map"), "-r", "host")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	// grub-emu has gfxterm and SDL 1.2 built in; SDL without a display
	// falls back to libcaca on the terminal and a "terminal_output
	// gfxterm" takes the output away. A video driver SDL does not have
	// makes the video init fail, as on a machine without video.
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TERM=vt100", "SDL_VIDEODRIVER=vtpmboot-none")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		slave.Close()
		return nil, fmt.Errorf("grub-emu: %w", err)
	}
	slave.Close()
	var all bytes.Buffer
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 1<<16)
		var tail []byte
		for {
			n, err := master.Read(buf)
			if os.Getenv("GRUBEMU_DEBUG") != "" {
				fmt.Fprintf(os.Stderr, "%s %q\n", time.Now().Format("05.000"), lastLines(buf[:n], 3))
			}
			if n > 0 {
				all.Write(buf[:n])
				tail = append(tail, buf[:n]...)
				for {
					clean := ansi.ReplaceAll(tail, nil)
					// The earliest prompt is answered first; what follows
					// it stays for the next round.
					best, bi := -1, -1
					for k, p := range prompts {
						if i := bytes.Index(clean, []byte(p.text)); i >= 0 && (best < 0 || i < best) {
							best, bi = i, k
						}
					}
					if bi < 0 {
						// keep enough to match a prompt split across reads
						if len(tail) > 4096 {
							tail = tail[len(tail)-4096:]
						}
						break
					}
					master.Write([]byte(prompts[bi].key))
					tail = append([]byte(nil), clean[best+len(prompts[bi].text):]...)
				}
			}
			if err != nil {
				if errors.Is(err, io.EOF) || errors.Is(err, syscall.EIO) || errors.Is(err, os.ErrClosed) {
					err = nil
				}
				done <- err
				return
			}
		}
	}()
	werr := cmd.Wait()
	// The reader ends at EIO once the child's side is gone; closing the
	// master before that would lose the last output.
	var rerr error
	select {
	case rerr = <-done:
	case <-time.After(5 * time.Second):
		master.Close()
		rerr = <-done
	}
	if ctx.Err() != nil {
		return all.Bytes(), fmt.Errorf("grub-emu: %w; output:\n%s", ctx.Err(), lastLines(all.Bytes(), 60))
	}
	if werr != nil {
		return all.Bytes(), fmt.Errorf("grub-emu: %w; output:\n%s", werr, lastLines(all.Bytes(), 60))
	}
	return all.Bytes(), rerr
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.ReplaceAll(string(ansi.ReplaceAll(b, nil)), "\r", ""), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// parse splits grub-emu's output into each probe's results.
func parse(out []byte, scripts []Script) ([][]Boot, error) {
	res := make([][]Boot, len(scripts))
	for i, s := range scripts {
		res[i] = make([]Boot, len(s.Probes))
		for j, p := range s.Probes {
			res[i][j] = Boot{Probe: p, Vars: map[string]string{}}
		}
	}
	var cur *Boot
	var call *Call
	ended := false
	sc := bufio.NewScanner(bytes.NewReader(ansi.ReplaceAll(out, nil)))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		line = strings.ReplaceAll(line, "\r", "")
		if k := strings.Index(line, "@@P["); k >= 0 {
			f := strings.TrimSuffix(line[k+4:], "]")
			if f == "end" {
				ended = true
				cur = nil
				continue
			}
			var i, j int
			if _, err := fmt.Sscanf(f, "%d %d", &i, &j); err != nil || i >= len(res) || j >= len(res[i]) {
				return nil, fmt.Errorf("grub-emu output: bad probe marker %q", line)
			}
			cur, call = &res[i][j], nil
			continue
		}
		if cur == nil {
			continue
		}
		if call == nil && strings.Contains(line, "Failed to boot") {
			cur.Attempts++
			continue
		}
		if cur.Attempts > 0 {
			continue
		}
		if call == nil && strings.Contains(line, "Booting `") {
			cur.booting = true
			continue
		}
		switch {
		case call != nil && strings.Contains(line, "@@A["):
			a := line[strings.Index(line, "@@A[")+4:]
			call.Args = append(call.Args, strings.TrimSuffix(a, "]"))
		case call != nil && strings.HasSuffix(line, "@@."):
			call = nil
		case call != nil:
			// an argument that held a newline goes on here
			if n := len(call.Args); n > 0 {
				call.Args[n-1] = strings.TrimSuffix(call.Args[n-1]+"]", "]") + "\n" + strings.TrimSuffix(line, "]")
			}
		case (strings.Contains(line, "@@L[") || strings.Contains(line, "@@I[")) && !cur.booting:
			// a linux or initrd outside any entry, run while the config
			// is read: not what the entry boots; skip its arguments
			call = &Call{}
		case strings.Contains(line, "@@L[") || strings.Contains(line, "@@I["):
			k := strings.Index(line, "@@L[")
			isLinux := k >= 0
			if !isLinux {
				k = strings.Index(line, "@@I[")
			}
			c := Call{Chosen: strings.TrimSuffix(line[k+4:], "]")}
			if isLinux {
				cur.Linux = append(cur.Linux, c)
				call = &cur.Linux[len(cur.Linux)-1]
			} else {
				cur.Initrd = append(cur.Initrd, c)
				call = &cur.Initrd[len(cur.Initrd)-1]
			}
		case strings.Contains(line, "@@V["):
			v := line[strings.Index(line, "@@V[")+4:]
			name, val, _ := strings.Cut(v, "]=[")
			cur.Vars[name] = strings.TrimSuffix(val, "]")
		case strings.Contains(line, "Enter username:"):
			cur.Auth = true
		case strings.Contains(line, "error: "):
			cur.Errors = append(cur.Errors, strings.TrimSpace(line[strings.Index(line, "error: "):]))
		default:
			if t := strings.TrimSpace(line); t != "" {
				cur.Output = append(cur.Output, t)
			}
		}
	}
	if !ended {
		return nil, fmt.Errorf("grub-emu stopped before its last probe; output:\n%s", lastLines(out, 30))
	}
	return res, nil
}

// Cmdline is the command line GRUB's linux loader builds from a linux
// call's arguments (path first): "BOOT_IMAGE=" then each argument, with
// \ ' " escaped by a backslash and an argument holding a space quoted
// (grub_create_loader_cmdline, grub-core/lib/cmdline.c, GRUB 2.06).
func Cmdline(args []string) string {
	var b strings.Builder
	b.WriteString("BOOT_IMAGE=")
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		q := strings.Contains(a, " ")
		if q {
			b.WriteByte('"')
		}
		for k := 0; k < len(a); k++ {
			if a[k] == '\\' || a[k] == '\'' || a[k] == '"' {
				b.WriteByte('\\')
			}
			b.WriteByte(a[k])
		}
		if q {
			b.WriteByte('"')
		}
	}
	return b.String()
}

// splitChosen splits $chosen into its menu levels, undoing
// grub_menu_execute_entry's doubling of '>' inside an id or title.
func splitChosen(s string) []string {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '>' {
			if i+1 < len(s) && s[i+1] == '>' {
				cur.WriteByte('>')
				i++
				continue
			}
			parts = append(parts, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteByte(s[i])
	}
	return append(parts, cur.String())
}
