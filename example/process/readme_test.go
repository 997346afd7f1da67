package process

import (
	"os"
	"strings"
	"testing"

	"github.com/socket-warp/socket-warp/example/internal/readme"
)

// TestREADMESampleOutput runs the commands of every README block marked
// <!-- check: sample-output --> and compares what they print with the
// lines the block shows after each: the README's sample errors are what
// the binaries say. A command is "$ [VAR=value ...] bin/NAME [# comment]";
// it runs in an empty directory with the environment of the README's
// "Running sw-listener" command (<!-- check: listener-run -->) and its own
// variables, nothing else but PATH.
func TestREADMESampleOutput(t *testing.T) {
	run, err := readme.Find("listener-run")
	if err != nil {
		t.Fatal(err)
	}
	base := envOf(t, run.Body)
	if len(base) == 0 {
		t.Fatalf("README.md:%d: no VAR=value lines in the listener-run block", run.Line)
	}
	parts, err := readme.All()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range parts {
		if p.Name != "sample-output" {
			continue
		}
		for _, s := range samples(t, p) {
			n++
			t.Run(strings.Join(append(s.env, s.bin), " "), func(t *testing.T) {
				// The sample shows a file that is not there.
				for _, v := range base {
					if path, ok := strings.CutPrefix(v, "SWL_CERT_PATH="); ok {
						if _, err := os.Stat(path); err == nil {
							t.Skipf("%s exists on this machine; the sample needs it not to", path)
						}
					}
				}
				cmd := append(append([]string{}, base...), s.env...)
				code, stdout, stderr := runCmdIn(t, t.TempDir(), s.bin, cmd)
				got := strings.TrimRight(stdout+stderr, "\n")
				if want := strings.Join(s.want, "\n"); got != want {
					t.Errorf("README.md:%d: %s prints (exit %d)\n%s\nbut the README shows\n%s", s.line, s.bin, code, got, want)
				}
				if code == 0 {
					t.Errorf("README.md:%d: exit code 0 for a sample error", s.line)
				}
			})
		}
	}
	if n < 3 {
		t.Fatalf("%d sample commands in README.md, want at least 3", n)
	}
}

type sample struct {
	line int
	env  []string
	bin  string
	want []string
}

// samples splits a sample-output block into commands and their output.
func samples(t *testing.T, p readme.Part) []sample {
	t.Helper()
	var out []sample
	for i, l := range p.Body {
		cmd, ok := strings.CutPrefix(l, "$ ")
		if !ok {
			if len(out) == 0 {
				t.Fatalf("README.md:%d: output before the first $ command", p.Line+2+i)
			}
			out[len(out)-1].want = append(out[len(out)-1].want, l)
			continue
		}
		cmd, _, _ = strings.Cut(cmd, "#")
		s := sample{line: p.Line + 2 + i}
		for _, f := range strings.Fields(cmd) {
			switch {
			case s.bin == "" && strings.Contains(f, "="):
				s.env = append(s.env, f)
			case s.bin == "" && strings.HasPrefix(f, "bin/"):
				s.bin = strings.TrimPrefix(f, "bin/")
			default:
				t.Fatalf("README.md:%d: %q: want [VAR=value ...] bin/NAME, without arguments", s.line, l)
			}
		}
		if s.bin == "" {
			t.Fatalf("README.md:%d: %q runs no bin/ program", s.line, l)
		}
		out = append(out, s)
	}
	return out
}

// envOf collects the VAR=value lines of a shell command split over lines.
func envOf(t *testing.T, lines []string) []string {
	t.Helper()
	var env []string
	for _, l := range lines {
		f := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(l), `\`))
		if k, _, ok := strings.Cut(f, "="); ok && k == strings.ToUpper(k) && !strings.ContainsAny(f, " \t") {
			env = append(env, f)
		}
	}
	return env
}
