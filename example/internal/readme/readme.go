// Package readme finds the parts of the repository's README.md that tests
// check against what the code really does, so that its sample output and
// recipes are produced by the binaries, not typed by hand. A checked part
// follows a marker line, invisible on GitHub:
//
//	<!-- check: NAME -->
//
// and is the code block (``` fences) or the table (lines starting with |)
// that comes next. The marker names which test checks it.
package readme

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Path is README.md at the root of the repository: the directory above
// the working directory that holds go.work.
func Path() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return filepath.Join(dir, "README.md"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.work above the working directory: where is the repository?")
		}
		dir = parent
	}
}

// Part is what follows a marker.
type Part struct {
	Name string
	Line int      // of the marker, 1-based
	Lang string   // a code block's info string ("sh", "text"); "" for a table
	Body []string // the block's lines without the fences, or the table's lines
}

// Find returns the part after the marker NAME; it is an error when there
// is none or more than one.
func Find(name string) (Part, error) {
	parts, err := All()
	if err != nil {
		return Part{}, err
	}
	var found []Part
	for _, p := range parts {
		if p.Name == name {
			found = append(found, p)
		}
	}
	if len(found) != 1 {
		return Part{}, fmt.Errorf("README.md: %d parts marked <!-- check: %s -->, want 1", len(found), name)
	}
	return found[0], nil
}

const markerPrefix, markerSuffix = "<!-- check: ", " -->"

// All returns every marked part of README.md, in order.
func All() ([]Part, error) {
	path, err := Path()
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	var parts []Part
	for i, l := range lines {
		name, ok := strings.CutPrefix(strings.TrimSpace(l), markerPrefix)
		if !ok {
			continue
		}
		name, ok = strings.CutSuffix(name, markerSuffix)
		if !ok {
			return nil, fmt.Errorf("README.md:%d: a marker is %s NAME%s on one line", i+1, markerPrefix, markerSuffix)
		}
		p, err := partAt(lines, i+1)
		if err != nil {
			return nil, fmt.Errorf("README.md:%d: <!-- check: %s -->: %w", i+1, name, err)
		}
		p.Name, p.Line = strings.TrimSpace(name), i+1
		parts = append(parts, p)
	}
	return parts, nil
}

// partAt reads the code block or table starting at lines[i], after blank
// lines.
func partAt(lines []string, i int) (Part, error) {
	for i < len(lines) && strings.TrimSpace(lines[i]) == "" {
		i++
	}
	if i == len(lines) {
		return Part{}, errors.New("nothing follows it")
	}
	if lang, ok := strings.CutPrefix(lines[i], "```"); ok {
		for j := i + 1; j < len(lines); j++ {
			if strings.HasPrefix(lines[j], "```") {
				return Part{Lang: strings.TrimSpace(lang), Body: lines[i+1 : j]}, nil
			}
		}
		return Part{}, errors.New("its code block does not end")
	}
	if strings.HasPrefix(lines[i], "|") {
		j := i
		for j < len(lines) && strings.HasPrefix(lines[j], "|") {
			j++
		}
		return Part{Body: lines[i:j]}, nil
	}
	return Part{}, fmt.Errorf("a code block or a table must follow it, not %q", lines[i])
}

// Rows splits a table's lines into cells, without the header and the
// separator line; backticks around a whole cell are removed.
func (p Part) Rows() [][]string {
	var rows [][]string
	for k, l := range p.Body {
		if k < 2 {
			continue // header, |---|
		}
		cells := strings.Split(strings.Trim(strings.TrimSpace(l), "|"), " | ")
		for c := range cells {
			cells[c] = strings.TrimSpace(cells[c])
			if s := cells[c]; len(s) >= 2 && strings.Count(s, "`") == 2 && s[0] == '`' && s[len(s)-1] == '`' {
				cells[c] = s[1 : len(s)-1]
			}
		}
		rows = append(rows, cells)
	}
	return rows
}
