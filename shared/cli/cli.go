// Package cli is what the daemons' command lines share: the version, a help
// text generated from the configuration struct (so it lists every setting
// and cannot drift from it), and the report of check-config.
package cli

import (
	"fmt"
	"io"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/socket-warp/socket-warp/shared/tlsutil"
)

// Version is set at build time:
//
//	-ldflags "-X github.com/socket-warp/socket-warp/shared/cli.Version=$(git describe --always --dirty)"
var Version = "dev"

// VersionLine is what --version prints.
func VersionLine(name string) string {
	return fmt.Sprintf("%s %s (%s %s/%s)", name, Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// Setting is one configuration setting as --help shows it.
type Setting struct {
	Env     string // environment variable
	Key     string // settings.json key, "" if none
	Default string // "" if none
	Desc    string
}

// Settings lists the fields of the struct defaults that have an envconfig
// tag, in declaration order. The default is the field's `default` tag, or
// else its value in defaults when that is not the zero value; the
// description is its `desc` tag, the key its `json` tag.
func Settings(defaults any) []Setting {
	v := reflect.Indirect(reflect.ValueOf(defaults))
	t := v.Type()
	var out []Setting
	for i := range t.NumField() {
		f := t.Field(i)
		env := f.Tag.Get("envconfig")
		if env == "" || env == "-" {
			continue
		}
		s := Setting{Env: strings.Split(env, ",")[0], Desc: f.Tag.Get("desc")}
		if key, _, _ := strings.Cut(f.Tag.Get("json"), ","); key != "-" {
			s.Key = key
		}
		if d, ok := f.Tag.Lookup("default"); ok {
			s.Default = d
		} else if fv := v.Field(i); !fv.IsZero() {
			s.Default = format(fv)
		}
		out = append(out, s)
	}
	return out
}

func format(v reflect.Value) string {
	if s, ok := v.Interface().(fmt.Stringer); ok {
		return s.String()
	}
	if v.Kind() == reflect.Float32 || v.Kind() == reflect.Float64 {
		return strconv.FormatFloat(v.Float(), 'g', 4, 64)
	}
	return fmt.Sprint(v.Interface())
}

// PrintSettings writes one aligned line per setting: variable, settings.json
// key when withKey, default, description.
func PrintSettings(w io.Writer, settings []Setting, withKey bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if withKey {
		fmt.Fprintln(tw, "  variable\tsettings.json\tdefault\tmeaning")
	} else {
		fmt.Fprintln(tw, "  variable\tdefault\tmeaning")
	}
	for _, s := range settings {
		def := s.Default
		if def == "" {
			def = "-"
		}
		if withKey {
			key := s.Key
			if key == "" {
				key = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", s.Env, key, def, s.Desc)
		} else {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", s.Env, def, s.Desc)
		}
	}
	tw.Flush()
}

// Report prints the findings of check-config, one line each, then a summary
// line, and returns the exit code: 0 when nothing is a problem, else 1.
func Report(w io.Writer, name string, f tlsutil.Findings) int {
	for _, p := range f.Problems {
		fmt.Fprintf(w, "problem: %s\n", oneLine(p))
	}
	for _, p := range f.Warnings {
		fmt.Fprintf(w, "warning: %s\n", oneLine(p))
	}
	for _, p := range f.Notes {
		fmt.Fprintf(w, "note: %s\n", oneLine(p))
	}
	if !f.OK() {
		fmt.Fprintf(w, "%s check-config: %d problem(s), %d warning(s)\n", name, len(f.Problems), len(f.Warnings))
		return 1
	}
	fmt.Fprintf(w, "%s check-config: ok (%d warning(s))\n", name, len(f.Warnings))
	return 0
}

// ProblemsOf turns an error, joined ones included, into one problem each.
func ProblemsOf(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	switch arg {
	case "--help", "-help", "-h", "help":
		return true
	}
	return false
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }

// Command is a daemon's command line: without arguments it runs; --version,
// --help and check-config do what they say; anything else is a usage error.
type Command struct {
	Name     string
	Synopsis string // the arguments, e.g. "[--version | --help | check-config]"
	Run      func()
	Usage    func(io.Writer)
	Check    func() int // check-config's exit code
}

// Main carries out args (os.Args[1:]) and returns the exit code; Run's
// return is 0. A request for help anywhere among args is granted: whoever
// asks for it (check-config --help) wants to know, not a usage error.
func (c Command) Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		c.Run()
		return 0
	}
	for _, a := range args {
		if isHelp(a) {
			c.Usage(stdout)
			return 0
		}
	}
	if len(args) == 1 {
		switch args[0] {
		case "--version", "-version":
			fmt.Fprintln(stdout, VersionLine(c.Name))
			return 0
		case "check-config":
			return c.Check()
		}
	}
	fmt.Fprintf(stderr, "%s: unknown arguments %q\n", c.Name, strings.Join(args, " "))
	fmt.Fprintf(stderr, "usage: %s %s\n", c.Name, c.Synopsis)
	return 2
}
