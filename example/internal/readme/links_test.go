package readme

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var (
	mdLink   = regexp.MustCompile(`\[[^\]]*\]\(([^)\s]+)\)`)
	notInURL = regexp.MustCompile(`[^\w\- ]`)
)

// TestLinks checks every relative link of README.md and docs/*.md: the file
// exists, and a #fragment names a heading of the Markdown file it points
// to. Sections move between the README and docs/; their links must follow.
func TestLinks(t *testing.T) {
	readme, err := Path()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(readme)
	docs, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	for _, file := range append([]string{readme}, docs...) {
		text, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, file)
		for i, line := range strings.Split(string(text), "\n") {
			for _, m := range mdLink.FindAllStringSubmatch(line, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				path, frag, _ := strings.Cut(target, "#")
				dest := file
				if path != "" {
					dest = filepath.Join(filepath.Dir(file), path)
				}
				if _, err := os.Stat(dest); err != nil {
					t.Errorf("%s:%d: link %s: %v", rel, i+1, target, err)
					continue
				}
				if frag != "" && strings.HasSuffix(dest, ".md") && !headings(t, dest)[frag] {
					t.Errorf("%s:%d: link %s: no heading #%s in %s", rel, i+1, target, frag, filepath.Base(dest))
				}
			}
		}
	}
}

// headings returns the anchors GitHub makes of a Markdown file's headings
// (code blocks skipped).
func headings(t *testing.T, file string) map[string]bool {
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	fenced := false
	for _, line := range strings.Split(string(text), "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
		}
		if fenced || !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
		anchors[strings.ReplaceAll(notInURL.ReplaceAllString(h, ""), " ", "-")] = true
	}
	return anchors
}
