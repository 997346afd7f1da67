package readme

import "testing"

// checkedBy names, for every marker README.md may carry, what checks the
// part after it; a marker nothing checks would look checked and not be.
var checkedBy = map[string]string{
	"listener-run":      "example/process TestREADMESampleOutput (the environment of the samples)",
	"sample-output":     "example/process TestREADMESampleOutput",
	"api-errors":        "example/e2e TestREADMEAPIErrors",
	"procube-ca-recipe": "example/e2e TestProcubeCARecipe",
	"systemd-security":  "example/systemd/check.sh (make systemd-check)",
}

func TestMarkers(t *testing.T) {
	parts, err := All()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, p := range parts {
		if checkedBy[p.Name] == "" {
			t.Errorf("README.md:%d: marker %q: nothing checks it (known: see checkedBy)", p.Line, p.Name)
		}
		if len(p.Body) == 0 {
			t.Errorf("README.md:%d: marker %q: the part after it is empty", p.Line, p.Name)
		}
		seen[p.Name] = true
	}
	for name, by := range checkedBy {
		if !seen[name] {
			t.Errorf("README.md has no part marked %q, which %s checks", name, by)
		}
	}
}
