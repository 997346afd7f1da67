package cli

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/shared/testutil"
	"github.com/socket-warp/socket-warp/shared/tlsutil"
)

func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }

type secret string

func (s secret) String() string { return "[redacted]" }

type sample struct {
	Path    string        `envconfig:"X_PATH" desc:"a path"`
	Port    int           `envconfig:"X_PORT" default:"11443" desc:"a port"`
	Wait    time.Duration `json:"wait" envconfig:"X_WAIT" desc:"a wait"`
	Ratio   float64       `json:"ratio" envconfig:"X_RATIO"`
	Token   secret        `envconfig:"X_TOKEN" desc:"never shown"`
	NoEnv   string        `json:"no_env"`
	Skipped string        `envconfig:"-"`
}

func TestSettings(t *testing.T) {
	got := Settings(sample{Wait: 20 * time.Second, Ratio: 2.0 / 3, Port: 1})
	want := []Setting{
		{Env: "X_PATH", Desc: "a path"},
		{Env: "X_PORT", Default: "11443", Desc: "a port"}, // the tag wins over the value
		{Env: "X_WAIT", Key: "wait", Default: "20s", Desc: "a wait"},
		{Env: "X_RATIO", Key: "ratio", Default: "0.6667"},
		{Env: "X_TOKEN", Desc: "never shown"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Settings = %+v\nwant %+v", got, want)
	}
	if s := Settings(&sample{Token: "hunter2"}); s[4].Default != "[redacted]" {
		t.Fatalf("a secret's default printed as %q", s[4].Default)
	}

	var b bytes.Buffer
	PrintSettings(&b, got, true)
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) != 1+len(want) || !strings.Contains(lines[3], "X_WAIT") || !strings.Contains(lines[3], "wait") ||
		!strings.Contains(lines[3], "20s") || !strings.Contains(lines[3], "a wait") || !strings.Contains(lines[1], "-") {
		t.Fatalf("PrintSettings:\n%s", b.String())
	}
}

func TestReport(t *testing.T) {
	var b bytes.Buffer
	if code := Report(&b, "sw-x", tlsutil.Findings{Warnings: []string{"soon"}, Notes: []string{"names"}}); code != 0 ||
		b.String() != "warning: soon\nnote: names\nsw-x check-config: ok (1 warning(s))\n" {
		t.Fatalf("ok report: %d %q", code, b.String())
	}
	b.Reset()
	f := tlsutil.Findings{Problems: ProblemsOf(errors.Join(errors.New("a"), errors.New("b\nc")))}
	if code := Report(&b, "sw-x", f); code != 1 ||
		b.String() != "problem: a\nproblem: b\nproblem: c\nsw-x check-config: 3 problem(s), 0 warning(s)\n" {
		t.Fatalf("problem report: %d %q", code, b.String())
	}
}

func TestCommandMain(t *testing.T) {
	var ran, checked int
	c := Command{Name: "sw-x", Synopsis: "[--version | --help | check-config]",
		Run: func() { ran++ }, Usage: func(w io.Writer) { io.WriteString(w, "usage text\n") },
		Check: func() int { checked++; return 1 }}
	for _, tc := range []struct {
		args           []string
		code           int
		stdout, stderr string
	}{
		{nil, 0, "", ""},
		{[]string{"--version"}, 0, "sw-x " + Version, ""},
		{[]string{"-h"}, 0, "usage text", ""},
		{[]string{"check-config", "--help"}, 0, "usage text", ""},
		{[]string{"check-config"}, 1, "", ""},
		{[]string{"check-config", "extra"}, 2, "", `sw-x: unknown arguments "check-config extra"` + "\nusage: sw-x [--version | --help | check-config]"},
		{[]string{"--verbose"}, 2, "", "unknown arguments"},
	} {
		var out, errOut strings.Builder
		if code := c.Main(tc.args, &out, &errOut); code != tc.code {
			t.Errorf("%q: exit %d, want %d", tc.args, code, tc.code)
		}
		if !strings.Contains(out.String(), tc.stdout) || !strings.Contains(errOut.String(), tc.stderr) {
			t.Errorf("%q: stdout %q, stderr %q; want them to contain %q and %q", tc.args, out.String(), errOut.String(), tc.stdout, tc.stderr)
		}
	}
	if ran != 1 || checked != 1 {
		t.Errorf("Run called %d times, Check %d times; want once each", ran, checked)
	}
}

// decoded words its own errors, as a setting type with a Decode method does.
type decoded struct{}

func (*decoded) Decode(string) error { return errors.New(`is not a colour such as "red"`) }

type typed struct {
	Port   int           `envconfig:"T_PORT"`
	Count  uint          `envconfig:"T_COUNT"`
	Wait   time.Duration `envconfig:"T_WAIT"`
	Ratio  float64       `envconfig:"T_RATIO"`
	On     bool          `envconfig:"T_ON"`
	Ports  []int         `envconfig:"T_PORTS"`
	Colour decoded       `envconfig:"T_COLOUR"`
}

// TestLoadEnvNamesTheVariable: a value that does not parse is one line
// naming the variable, the value and what it must be.
func TestLoadEnvNamesTheVariable(t *testing.T) {
	for _, tc := range []struct{ env, value, want string }{
		{"T_PORT", "abc", `T_PORT: "abc" is not a number`},
		{"T_PORT", "1.5", `T_PORT: "1.5" is not a whole number`},
		{"T_PORT", "99999999999999999999", `T_PORT: "99999999999999999999" is out of range for a whole number`},
		{"T_COUNT", "-1", `T_COUNT: "-1" is not a whole number of 0 or more`},
		{"T_WAIT", "5", `T_WAIT: "5" is not a duration such as "20s"`},
		{"T_RATIO", "most", `T_RATIO: "most" is not a number`},
		{"T_ON", "yes", `T_ON: "yes" is not true or false`},
		{"T_PORTS", "1,x", `T_PORTS: "1,x" is not a comma-separated list of whole numbers`},
		{"T_COLOUR", "blue-ish", `T_COLOUR: "blue-ish" is not a colour such as "red"`},
	} {
		t.Run(tc.env+"="+tc.value, func(t *testing.T) {
			t.Setenv(tc.env, tc.value)
			var c typed
			if err := LoadEnv(&c); err == nil || err.Error() != tc.want {
				t.Fatalf("LoadEnv: %v, want %q", err, tc.want)
			}
		})
	}
	t.Setenv("T_PORTS", "1,2")
	var c typed
	if err := LoadEnv(&c); err != nil || !reflect.DeepEqual(c.Ports, []int{1, 2}) {
		t.Fatalf("LoadEnv: %v, %+v", err, c)
	}
}
