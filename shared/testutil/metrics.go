package testutil

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics is one scrape, parsed: metric families by name.
type Metrics map[string]*dto.MetricFamily

// Scrape GETs url (a /metrics endpoint), with the bearer token when not
// empty, and parses the text format. It fails the test on any error.
func Scrape(t testing.TB, url, token string) Metrics {
	t.Helper()
	return ScrapeWith(t, http.DefaultClient, url, token)
}

// ScrapeWith is Scrape through client: one that dials into another network
// namespace, say.
func ScrapeWith(t testing.TB, client *http.Client, url, token string) Metrics {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	// Plain text: the format both daemons must serve to any scraper.
	req.Header.Set("Accept", "text/plain")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape %s: %d %s", url, resp.StatusCode, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	return fams
}

// Gather reads g (a daemon's registry) as a scrape would, without HTTP.
func Gather(t testing.TB, g prometheus.Gatherer) Metrics {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	m := Metrics{}
	for _, f := range fams {
		m[f.GetName()] = f
	}
	return m
}

// Value is the value of the counter, gauge or untyped sample of metric name
// whose labels include every label=value pair given (as "k", "v", ...), and
// for a histogram its sample count. ok is false when there is no such sample.
func (m Metrics) Value(name string, labels ...string) (v float64, ok bool) {
	fam := m[name]
	if fam == nil {
		return 0, false
	}
next:
	for _, s := range fam.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range s.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case s.Counter != nil:
			return s.Counter.GetValue(), true
		case s.Gauge != nil:
			return s.Gauge.GetValue(), true
		case s.Histogram != nil:
			return float64(s.Histogram.GetSampleCount()), true
		case s.Untyped != nil:
			return s.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// Type is the type of metric name ("" when absent), e.g. "COUNTER".
func (m Metrics) Type(name string) string {
	if fam := m[name]; fam != nil {
		return fam.GetType().String()
	}
	return ""
}

// String lists the metric names and label sets, for failure messages.
func (m Metrics) String() string {
	var lines []string
	for name, fam := range m {
		for _, s := range fam.GetMetric() {
			var ls []string
			for _, lp := range s.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			lines = append(lines, name+"{"+strings.Join(ls, ",")+"}")
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
