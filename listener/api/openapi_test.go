package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"

	"github.com/socket-warp/socket-warp/listener/port"
	"github.com/socket-warp/socket-warp/shared/metrics"
)

// The part of OpenAPI 3.1 that openapi.yaml uses. Decoding into these types
// (not into maps) makes a misspelt key in the file a failing test rather
// than a silently ignored one: see loadSpec.
type (
	openapiDoc struct {
		OpenAPI  string                           `yaml:"openapi"`
		Info     map[string]any                   `yaml:"info"`
		Servers  []map[string]any                 `yaml:"servers"`
		Security []map[string][]string            `yaml:"security"`
		Paths    map[string]map[string]*operation `yaml:"paths"`
		Comps    components                       `yaml:"components"`
	}
	components struct {
		SecuritySchemes map[string]securityScheme `yaml:"securitySchemes"`
		Headers         map[string]*header        `yaml:"headers"`
		Schemas         map[string]*schema        `yaml:"schemas"`
		Responses       map[string]*response      `yaml:"responses"`
	}
	securityScheme struct {
		Type        string `yaml:"type"`
		Scheme      string `yaml:"scheme"`
		Description string `yaml:"description"`
	}
	operation struct {
		OperationID string `yaml:"operationId"`
		Summary     string `yaml:"summary"`
		Description string `yaml:"description"`
		// nil: the document's security applies; empty: none.
		Security    *[]map[string][]string `yaml:"security"`
		RequestBody *struct {
			Required bool                  `yaml:"required"`
			Content  map[string]*mediaType `yaml:"content"`
		} `yaml:"requestBody"`
		Responses map[string]*response `yaml:"responses"`
	}
	response struct {
		Ref         string                `yaml:"$ref"`
		Description string                `yaml:"description"`
		Headers     map[string]*header    `yaml:"headers"`
		Content     map[string]*mediaType `yaml:"content"`
	}
	header struct {
		Ref         string  `yaml:"$ref"`
		Description string  `yaml:"description"`
		Required    bool    `yaml:"required"`
		Schema      *schema `yaml:"schema"`
	}
	mediaType struct {
		Schema   *schema            `yaml:"schema"`
		Example  any                `yaml:"example"`
		Examples map[string]example `yaml:"examples"`
	}
	example struct {
		Summary string `yaml:"summary"`
		Value   any    `yaml:"value"`
	}
	schema struct {
		Ref                  string             `yaml:"$ref"`
		Type                 string             `yaml:"type"`
		Format               string             `yaml:"format"`
		Description          string             `yaml:"description"`
		Required             []string           `yaml:"required"`
		Properties           map[string]*schema `yaml:"properties"`
		AdditionalProperties *bool              `yaml:"additionalProperties"`
		Items                *schema            `yaml:"items"`
		Enum                 []any              `yaml:"enum"`
		Minimum              *float64           `yaml:"minimum"`
		Maximum              *float64           `yaml:"maximum"`
		MinLength            *int               `yaml:"minLength"`
		MaxLength            *int               `yaml:"maxLength"`
		Pattern              string             `yaml:"pattern"`
	}
)

func loadSpec(t *testing.T) *openapiDoc {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(OpenAPI))
	dec.KnownFields(true)
	var doc openapiDoc
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Fatalf("openapi.yaml: openapi %q, want 3.1.x", doc.OpenAPI)
	}
	return &doc
}

// ref returns the name a "#/components/<kind>/<name>" reference points to.
func ref(t *testing.T, r, kind string) string {
	t.Helper()
	name, ok := strings.CutPrefix(r, "#/components/"+kind+"/")
	if !ok {
		t.Fatalf("$ref %q is not under #/components/%s/", r, kind)
	}
	return name
}

func (d *openapiDoc) schema(t *testing.T, s *schema) *schema {
	t.Helper()
	for s != nil && s.Ref != "" {
		name := ref(t, s.Ref, "schemas")
		if s = d.Comps.Schemas[name]; s == nil {
			t.Fatalf("$ref to the undefined schema %q", name)
		}
	}
	return s
}

func (d *openapiDoc) response(t *testing.T, r *response) *response {
	t.Helper()
	if r != nil && r.Ref != "" {
		name := ref(t, r.Ref, "responses")
		if r = d.Comps.Responses[name]; r == nil {
			t.Fatalf("$ref to the undefined response %q", name)
		}
	}
	return r
}

func (d *openapiDoc) header(t *testing.T, h *header) *header {
	t.Helper()
	if h != nil && h.Ref != "" {
		name := ref(t, h.Ref, "headers")
		if h = d.Comps.Headers[name]; h == nil {
			t.Fatalf("$ref to the undefined header %q", name)
		}
	}
	return h
}

// op is the operation for method and path; nil when none is described.
func (d *openapiDoc) op(method, path string) *operation {
	return d.Paths[path][strings.ToLower(method)]
}

// public says whether the operation needs no token.
func (d *openapiDoc) public(o *operation) bool {
	sec := d.Security
	if o.Security != nil {
		sec = *o.Security
	}
	return len(sec) == 0
}

// requestSchema is the operation's JSON request schema and its examples
// by name (nil when it takes no body).
func (d *openapiDoc) requestSchema(t *testing.T, o *operation) (*schema, map[string]example) {
	t.Helper()
	if o.RequestBody == nil {
		return nil, nil
	}
	mt := o.RequestBody.Content["application/json"]
	if mt == nil || len(o.RequestBody.Content) != 1 {
		t.Fatalf("request body is not described as application/json alone")
	}
	return d.schema(t, mt.Schema), mt.Examples
}

// jsonValue turns a value as YAML decodes it into the same value as
// encoding/json decodes it, with json.Number for numbers.
func jsonValue(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("example %v: %v", v, err)
	}
	return decodeJSON(t, b)
}

func decodeJSON(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%q is not JSON: %v", b, err)
	}
	return v
}

func sameJSON(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

// validate returns what in v (as decodeJSON returns it) breaks s, each
// problem prefixed with where it is; nil when v conforms.
func (d *openapiDoc) validate(t *testing.T, s *schema, v any, at string) []string {
	t.Helper()
	s = d.schema(t, s)
	if s == nil {
		return nil
	}
	var problems []string
	bad := func(format string, args ...any) {
		problems = append(problems, at+": "+fmt.Sprintf(format, args...))
	}
	if len(s.Enum) > 0 && !slices.ContainsFunc(s.Enum, func(e any) bool { return sameJSON(jsonValue(t, e), v) }) {
		bad("%v is not one of %v", v, s.Enum)
	}
	switch s.Type {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			bad("%T is not an object", v)
			break
		}
		for _, name := range s.Required {
			if _, ok := obj[name]; !ok {
				bad("required property %q is missing", name)
			}
		}
		for name, pv := range obj {
			ps, ok := s.Properties[name]
			if !ok {
				if s.AdditionalProperties != nil && !*s.AdditionalProperties {
					bad("property %q is not described", name)
				}
				continue
			}
			problems = append(problems, d.validate(t, ps, pv, at+"."+name)...)
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			bad("%T is not an array", v)
			break
		}
		for i, item := range arr {
			problems = append(problems, d.validate(t, s.Items, item, fmt.Sprintf("%s[%d]", at, i))...)
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			bad("%T is not a string", v)
			break
		}
		if n := utf8.RuneCountInString(str); (s.MinLength != nil && n < *s.MinLength) || (s.MaxLength != nil && n > *s.MaxLength) {
			bad("%q has a length out of bounds", str)
		}
		if s.Pattern != "" && !regexp.MustCompile(s.Pattern).MatchString(str) {
			bad("%q does not match %s", str, s.Pattern)
		}
		if s.Format == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				bad("%q is not a date-time: %v", str, err)
			}
		}
	case "integer", "number":
		n, ok := v.(json.Number)
		if !ok {
			bad("%T is not a number", v)
			break
		}
		if s.Type == "integer" {
			if _, err := n.Int64(); err != nil {
				bad("%s is not an integer", n)
				break
			}
		}
		f, _ := n.Float64()
		if (s.Minimum != nil && f < *s.Minimum) || (s.Maximum != nil && f > *s.Maximum) {
			bad("%s is out of bounds", n)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			bad("%T is not a boolean", v)
		}
	case "":
	default:
		t.Fatalf("%s: type %q is not one this test knows", at, s.Type)
	}
	return problems
}

// allOptions is the server with every route New can register.
func allOptions(ready func() error) []Option {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "socketwarp_listener_connectors", Help: "connectors connected now"})
	reg.MustRegister(g)
	g.Set(1)
	return []Option{WithToken(testToken), WithHealth(ready), WithMetrics(metrics.Handler(reg))}
}

// TestOpenAPIRoutes: every route the server registers, with every option,
// is described, and every described operation is a registered route.
func TestOpenAPIRoutes(t *testing.T) {
	doc := loadSpec(t)
	e := New(&service{ports: map[int]port.Spec{}}, zap.NewNop(), allOptions(func() error { return nil })...)

	// HEAD is GET without the body: described by the GET, and served with
	// every GET.
	served, heads := map[string]bool{}, map[string]bool{}
	for _, r := range e.Routes() {
		if r.Method == http.MethodHead {
			heads[r.Path] = true
			continue
		}
		served[r.Method+" "+r.Path] = true
	}
	for r := range served {
		if path, ok := strings.CutPrefix(r, "GET "); ok && !heads[path] {
			t.Errorf("route %s does not answer HEAD", r)
		}
	}
	for path := range heads {
		if !served["GET "+path] {
			t.Errorf("route HEAD %s has no GET", path)
		}
	}
	described := map[string]bool{}
	ids := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, o := range ops {
			described[strings.ToUpper(method)+" "+path] = true
			if o.OperationID == "" || ids[o.OperationID] {
				t.Errorf("%s %s: operationId %q is empty or not unique", method, path, o.OperationID)
			}
			ids[o.OperationID] = true
			if len(o.Responses) == 0 {
				t.Errorf("%s %s: no responses", method, path)
			}
		}
	}
	for r := range served {
		if !described[r] {
			t.Errorf("route %s is served but not described in openapi.yaml", r)
		}
	}
	for r := range described {
		if !served[r] {
			t.Errorf("openapi.yaml describes %s, which the server does not serve", r)
		}
	}
	if len(served) < 8 {
		t.Fatalf("only %d routes served: %v", len(served), served)
	}

	bearer, ok := doc.Comps.SecuritySchemes["bearerAuth"]
	if !ok || bearer.Type != "http" || !strings.EqualFold(bearer.Scheme, "bearer") {
		t.Errorf("security scheme bearerAuth = %+v, want http bearer", bearer)
	}
	if len(doc.Security) != 1 || doc.Security[0]["bearerAuth"] == nil {
		t.Errorf("document security %v, want bearerAuth for every operation not exempted", doc.Security)
	}
}

// checker sends requests to a real server and checks each answer against
// the description: its status is listed for the operation, its media type
// is described, its body validates against the schema and the required
// headers are there. It records which statuses were seen.
type checker struct {
	doc  *openapiDoc
	url  string
	mu   sync.Mutex
	seen map[string]map[string]bool // "GET /list" → statuses
}

func newChecker(t *testing.T, doc *openapiDoc, svc Service, opts ...Option) *checker {
	t.Helper()
	srv := httptest.NewServer(New(svc, zap.NewNop(), opts...))
	t.Cleanup(srv.Close)
	return &checker{doc: doc, url: srv.URL, seen: map[string]map[string]bool{}}
}

// send sends body (with the token when auth) and checks the answer; it
// returns the status and the body.
func (c *checker) send(t *testing.T, method, path, body string, auth bool) (int, string) {
	t.Helper()
	return c.sendWith(t, method, path, body, auth, nil)
}

// sendWith is send with more request headers (see do).
func (c *checker) sendWith(t *testing.T, method, path, body string, auth bool, more map[string]string) (int, string) {
	t.Helper()
	h := map[string]string{}
	for k, v := range more {
		h[k] = v
	}
	if auth {
		h["Authorization"] = "Bearer " + testToken
	}
	r, header := do(t, method, c.url+path, body, h)
	key := method + " " + path
	o := c.doc.op(method, path)
	if o == nil {
		t.Fatalf("%s is not described", key)
	}
	status := fmt.Sprint(r.status)
	c.mu.Lock()
	if c.seen[key] == nil {
		c.seen[key] = map[string]bool{}
	}
	c.seen[key][status] = true
	c.mu.Unlock()

	resp := c.doc.response(t, o.Responses[status])
	if resp == nil {
		t.Errorf("%s answered %s (%s), which openapi.yaml does not list", key, status, r.body)
		return r.status, r.body
	}
	for name, h := range resp.Headers {
		h = c.doc.header(t, h)
		v := header.Get(name)
		if v == "" {
			if h.Required {
				t.Errorf("%s %s: header %s is missing", key, status, name)
			}
			continue
		}
		for _, p := range c.doc.validate(t, h.Schema, v, name) {
			t.Errorf("%s %s: header: %s", key, status, p)
		}
	}
	mediaType, _, _ := strings.Cut(r.ctype, ";")
	mt := resp.Content[strings.TrimSpace(mediaType)]
	switch {
	case mt == nil:
		t.Errorf("%s %s: Content-Type %q is not described (%v)", key, status, r.ctype, keys(resp.Content))
	case mediaType == "application/json":
		for _, p := range c.doc.validate(t, mt.Schema, decodeJSON(t, []byte(r.body)), "body") {
			t.Errorf("%s %s: %s (body %s)", key, status, p, r.body)
		}
	default:
		for _, p := range c.doc.validate(t, mt.Schema, r.body, "body") {
			t.Errorf("%s %s: %s", key, status, p)
		}
	}
	return r.status, r.body
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// examples returns each example body of o's request as JSON, by name.
func (c *checker) examples(t *testing.T, o *operation) map[string]string {
	t.Helper()
	_, exs := c.doc.requestSchema(t, o)
	out := map[string]string{}
	for name, ex := range exs {
		b, _ := json.Marshal(ex.Value)
		out[name] = string(b)
	}
	return out
}

// TestOpenAPISecurity: without the token, exactly the operations described
// without security answer something other than 401; with it, none is 401.
func TestOpenAPISecurity(t *testing.T) {
	doc := loadSpec(t)
	c := newChecker(t, doc, &service{ports: map[int]port.Spec{}}, allOptions(func() error { return nil })...)
	for path, ops := range doc.Paths {
		for method, o := range ops {
			method = strings.ToUpper(method)
			body := ""
			for _, b := range c.examples(t, o) {
				body = b
			}
			status, _ := c.send(t, method, path, body, false)
			if public := doc.public(o); public != (status != http.StatusUnauthorized) {
				t.Errorf("%s %s without the token: %d, but described as public=%v", method, path, status, public)
			}
			if _, listed := o.Responses["401"]; listed == doc.public(o) {
				t.Errorf("%s %s: 401 listed=%v, public=%v", method, path, listed, doc.public(o))
			}
			if status, _ := c.send(t, method, path, body, true); status == http.StatusUnauthorized {
				t.Errorf("%s %s with the token: 401", method, path)
			}
		}
	}
}

// TestOpenAPIExamples: every example in the file conforms to its schema,
// and each request example sent to the server is answered with the success
// documented for it, with the response example of the same name as body.
func TestOpenAPIExamples(t *testing.T) {
	doc := loadSpec(t)
	checkExamples := func(where string, mt *mediaType) {
		if mt.Example != nil {
			for _, p := range doc.validate(t, mt.Schema, jsonValue(t, mt.Example), where+" example") {
				t.Error(p)
			}
		}
		for name, ex := range mt.Examples {
			for _, p := range doc.validate(t, mt.Schema, jsonValue(t, ex.Value), where+" example "+name) {
				t.Error(p)
			}
		}
	}
	for name, r := range doc.Comps.Responses {
		for ct, mt := range r.Content {
			checkExamples("components.responses."+name+" "+ct, mt)
		}
	}
	for path, ops := range doc.Paths {
		for method, o := range ops {
			if o.RequestBody != nil {
				for ct, mt := range o.RequestBody.Content {
					checkExamples(method+" "+path+" request "+ct, mt)
				}
			}
			for status, r := range o.Responses {
				if r.Ref == "" {
					for ct, mt := range r.Content {
						if strings.HasPrefix(ct, "application/json") {
							checkExamples(method+" "+path+" "+status+" "+ct, mt)
						}
					}
				}
			}
		}
	}

	// Opened before they are closed: POST before DELETE.
	svc := &service{ports: map[int]port.Spec{}}
	c := newChecker(t, doc, svc)
	order := []string{"post", "delete"}
	sent := 0
	for _, method := range order {
		for path, ops := range doc.Paths {
			o := ops[method]
			if o == nil || o.RequestBody == nil {
				continue
			}
			var success string
			for status := range o.Responses {
				if strings.HasPrefix(status, "2") {
					success = status
				}
			}
			answers := o.Responses[success].Content["application/json"].Examples
			for name, body := range c.examples(t, o) {
				status, got := c.send(t, strings.ToUpper(method), path, body, false)
				sent++
				if fmt.Sprint(status) != success {
					t.Errorf("%s %s example %s: %d %s, want %s", method, path, name, status, got, success)
					continue
				}
				want, ok := answers[name]
				if !ok {
					t.Errorf("%s %s: example %s has no %s answer of the same name", method, path, name, success)
					continue
				}
				if !sameJSON(decodeJSON(t, []byte(got)), jsonValue(t, want.Value)) {
					t.Errorf("%s %s example %s: answer %s, documented %v", method, path, name, got, want.Value)
				}
			}
		}
	}
	if sent < 3 {
		t.Fatalf("only %d request examples sent", sent)
	}
	svc.mu.Lock()
	defer svc.mu.Unlock()
	if len(svc.ports) != 1 {
		t.Errorf("after the open and close examples %d ports are open, want the one not closed", len(svc.ports))
	}
}

// stringProbes are sent for every string field that has a pattern or
// length bounds; the server must refuse exactly those the schema refuses.
var stringProbes = []string{
	"a", "swc-1", "host.example", "10.0.0.20", "2001:db8::1", "é.example", "a b", "a/b", `a\b`, "a\tb",
	"a\x00b", "a\u0085b", "", " ", "\t", "   ", " a", strings.Repeat("a", 128), strings.Repeat("a", 129),
	strings.Repeat("a", 253), strings.Repeat("a", 254),
	// Host names and addresses, good and bad.
	"db.internal.", "my_db.internal", "3com.1e100.net", "a-b.c-d", strings.Repeat("a", 63) + ".b", strings.Repeat("a", 64) + ".b",
	"::1", "::ffff:10.0.0.1", "10.0.0.255", "127.0.0.1:80", "db:5432", "[::1]", "[::1]:22", "fe80::1%eth0",
	"10.0.0.256", "1.2.3.4.5", "010.0.0.1", "-a.example", "a-.example", "a..b", ".a", "a.-b", "a.1", "1", "http://a",
}

// TestOpenAPIRequestConstraints derives bad and good values from each
// request schema — a missing required field, a wrong type, an unknown field,
// the bounds of an integer, the enum, probes for a pattern — sends them on
// the operation's first example, and checks the server refuses with a 400
// naming the field exactly when the schema does.
func TestOpenAPIRequestConstraints(t *testing.T) {
	doc := loadSpec(t)
	svc := &service{ports: map[int]port.Spec{}}
	c := newChecker(t, doc, svc)
	for path, ops := range doc.Paths {
		for method, o := range ops {
			s, exs := doc.requestSchema(t, o)
			if s == nil {
				continue
			}
			method = strings.ToUpper(method)
			names := keys(exs)
			base := jsonValue(t, exs[names[0]].Value).(map[string]any)
			try := func(what, field string, mutate func(map[string]any), wantBad bool) {
				t.Helper()
				body := map[string]any{}
				for k, v := range base {
					body[k] = v
				}
				mutate(body)
				b, _ := json.Marshal(body)
				svc.mu.Lock()
				svc.ports = map[int]port.Spec{}
				svc.mu.Unlock()
				status, answer := c.send(t, method, path, string(b), false)
				if isBad := status == http.StatusBadRequest; isBad != wantBad {
					t.Errorf("%s %s %s: %d %s, want 400=%v", method, path, what, status, answer, wantBad)
				} else if wantBad && !strings.Contains(answer, field) {
					t.Errorf("%s %s %s: error %s does not name %s", method, path, what, answer, field)
				}
			}
			try("unknown field", "x_undocumented", func(m map[string]any) { m["x_undocumented"] = 1 },
				s.AdditionalProperties != nil && !*s.AdditionalProperties)
			for _, name := range s.Required {
				try("without "+name, name, func(m map[string]any) { delete(m, name) }, true)
			}
			for _, name := range keys(s.Properties) {
				ps := doc.schema(t, s.Properties[name])
				set := func(v any) func(map[string]any) { return func(m map[string]any) { m[name] = v } }
				switch ps.Type {
				case "integer":
					try(name+" as a string", name, set("1"), true)
					if ps.Minimum != nil {
						try(name+" at its minimum", name, set(*ps.Minimum), false)
						try(name+" below its minimum", name, set(*ps.Minimum-1), true)
					}
					if ps.Maximum != nil {
						try(name+" at its maximum", name, set(*ps.Maximum), false)
						try(name+" above its maximum", name, set(*ps.Maximum+1), true)
					}
				case "string":
					try(name+" as a number", name, set(1), true)
					if len(ps.Enum) > 0 {
						for _, v := range ps.Enum {
							try(fmt.Sprintf("%s %q", name, v), name, set(v), false)
						}
						try(name+" not in its enum", name, set("v3"), true)
					}
					if ps.Pattern != "" || ps.MinLength != nil || ps.MaxLength != nil {
						for _, probe := range stringProbes {
							wantBad := len(doc.validate(t, ps, probe, name)) > 0
							try(fmt.Sprintf("%s %q", name, probe), name, set(probe), wantBad)
						}
					}
				default:
					t.Errorf("%s %s: request field %s of type %q: teach this test to probe it", method, path, name, ps.Type)
				}
			}
		}
	}
}

// TestOpenAPIStatuses drives every operation into every answer it can
// give, each checked against the description, and then checks that the
// statuses seen per operation are exactly those described: a handler that
// gains a status must document it, and a documented status must be real.
func TestOpenAPIStatuses(t *testing.T) {
	doc := loadSpec(t)
	var (
		readyMu sync.Mutex
		ready   = errors.New("restoring ports")
	)
	readyErr := func() error {
		readyMu.Lock()
		defer readyMu.Unlock()
		return ready
	}
	svc := &service{ports: map[int]port.Spec{}}
	c := newChecker(t, doc, svc, allOptions(readyErr)...)
	setErrs := func(open, close error) {
		svc.mu.Lock()
		defer svc.mu.Unlock()
		svc.openErr, svc.closeErr = open, close
	}

	const openBody = `{"uid":"swc-1","port":9000,"connect_address":"10.0.0.20","connect_port":22}`
	// Every kind of error the API maps, as a Service returns them.
	serviceErrors := []error{
		bindError(syscall.EACCES), bindError(syscall.EADDRINUSE), bindError(syscall.EADDRNOTAVAIL),
		fmt.Errorf("uid swc-9: %w", port.ErrNotConnected), port.ErrAlreadyOpen, port.ErrNotOpen,
		fmt.Errorf("too many open ports: %w", port.ErrLimit), fmt.Errorf("shutting down: %w", port.ErrUnavailable),
		errors.New("not opened: state file: disk full"),
	}
	for _, err := range serviceErrors {
		setErrs(err, err)
		c.send(t, http.MethodPost, "/open", openBody, true)
		c.send(t, http.MethodDelete, "/close", `{"port":9000}`, true)
	}
	setErrs(nil, nil)
	huge := `{"port":9000` + strings.Repeat(" ", MaxBodyBytes) + `}`
	for _, r := range []struct{ method, path, body string }{
		{http.MethodPost, "/open", openBody},
		{http.MethodPost, "/open", `{"uid":"swc-1"}`},
		{http.MethodPost, "/open", huge},
		{http.MethodDelete, "/close", `{"port":9000}`},
		{http.MethodDelete, "/close", `{"port":0}`},
		{http.MethodDelete, "/close", huge},
	} {
		c.send(t, r.method, r.path, r.body, true)
	}

	// /list with a served port, one restored with an error, and a served
	// one whose socket died: an error and live figures.
	svc.mu.Lock()
	svc.ports[9000] = port.Spec{UID: "swc-1", Port: 9000, ConnectAddress: "10.0.0.20", ConnectPort: 22, ProxyProtocol: port.ProxyV1}
	svc.ports[9001] = port.Spec{UID: "swc-2", Port: 9001, ConnectAddress: "10.0.0.21", ConnectPort: 22,
		Error: "listen tcp 0.0.0.0:9001: bind: address already in use"}
	svc.ports[9002] = port.Spec{UID: "swc-2", Port: 9002, ConnectAddress: "10.0.0.21", ConnectPort: 80,
		Error: "listener died: accept tcp 0.0.0.0:9002: accept4: invalid argument; re-binding"}
	svc.mu.Unlock()
	if _, body := c.send(t, http.MethodGet, "/list", "", true); !strings.Contains(body, `"error":"listen tcp`) ||
		!strings.Contains(body, `"active_connections":1`) ||
		!strings.Contains(body, `re-binding","active_connections":1`) {
		t.Errorf("/list does not show the three kinds of port: %s", body)
	}
	svc.mu.Lock()
	delete(svc.ports, 9002)
	svc.mu.Unlock()
	// /close of the errored port answers it with its error.
	if _, body := c.send(t, http.MethodDelete, "/close", `{"port":9001}`, true); !strings.Contains(body, `"error"`) {
		t.Errorf("/close of a port restored with an error: %s", body)
	}

	c.send(t, http.MethodGet, "/connections", "", true)
	if _, body := c.send(t, http.MethodGet, "/metrics", "", true); !strings.Contains(body, "socketwarp_listener_connectors 1") {
		t.Errorf("/metrics: %s", body)
	}
	c.send(t, http.MethodGet, "/healthz", "", false)
	c.send(t, http.MethodGet, "/readyz", "", false)
	readyMu.Lock()
	ready = nil
	readyMu.Unlock()
	c.send(t, http.MethodGet, "/readyz", "", false)
	if _, body := c.send(t, http.MethodGet, "/openapi.yaml", "", true); body != strings.TrimSpace(string(OpenAPI)) {
		t.Errorf("GET /openapi.yaml is not the embedded file")
	}
	// 401 for every operation that needs the token; 403 for a request from
	// another site or to a name the API does not answer to.
	for path, ops := range doc.Paths {
		for method, o := range ops {
			if !doc.public(o) {
				c.send(t, strings.ToUpper(method), path, "", false)
				c.sendWith(t, strings.ToUpper(method), path, "", true, map[string]string{"Origin": "http://evil.example"})
				c.sendWith(t, strings.ToUpper(method), path, "", true, map[string]string{"Host": "evil.example"})
			}
		}
	}
	// 415 for a body that is not JSON.
	c.sendWith(t, http.MethodPost, "/open", openBody, true, map[string]string{"Content-Type": "text/plain"})
	c.sendWith(t, http.MethodDelete, "/close", `{"port":9000}`, true, map[string]string{"Content-Type": "application/x-www-form-urlencoded"})

	for path, ops := range doc.Paths {
		for method, o := range ops {
			key := strings.ToUpper(method) + " " + path
			if got, want := keys(c.seen[key]), keys(o.Responses); !slices.Equal(got, want) {
				t.Errorf("%s: answered %v, described %v", key, got, want)
			}
		}
	}
}

// TestSchemaValidator: the validator the tests above rely on refuses what
// it must, so that their passing means something.
func TestSchemaValidator(t *testing.T) {
	doc := loadSpec(t)
	port := &schema{Ref: "#/components/schemas/Port"}
	conn := &schema{Ref: "#/components/schemas/Connection"}
	for _, tc := range []struct {
		s    *schema
		body string
		ok   bool
	}{
		{port, `{"uid":"a","port":1,"connect_address":"h","connect_port":65535}`, true},
		{port, `{"uid":"a","port":1,"connect_address":"h","connect_port":65535,"proxy_protocol":"v2","error":"x"}`, true},
		{port, `{"uid":"a","port":1,"connect_address":"h"}`, false},
		{port, `{"uid":"a","port":0,"connect_address":"h","connect_port":1}`, false},
		{port, `{"uid":"a","port":1.5,"connect_address":"h","connect_port":1}`, false},
		{port, `{"uid":"a","port":1,"connect_address":"h","connect_port":1,"proxy_protocol":"v3"}`, false},
		{port, `{"uid":"a","port":1,"connect_address":"h","connect_port":1,"live":true}`, false},
		{port, `{"uid":1,"port":1,"connect_address":"h","connect_port":1}`, false},
		{port, `[]`, false},
		{conn, `{"uid":"a","remote":"r","connected_since":"2026-01-01T00:00:00Z","cert_not_after":"2027-01-01T00:00:00.5+02:00",` +
			`"rtt_seconds":0.01,"active_streams":0,"bytes_up":0,"bytes_down":0,"draining":false}`, true},
		{conn, `{"uid":"a","remote":"r","connected_since":"yesterday","cert_not_after":"2027-01-01T00:00:00Z",` +
			`"rtt_seconds":0.01,"active_streams":0,"bytes_up":0,"bytes_down":0,"draining":"no"}`, false},
	} {
		if problems := doc.validate(t, tc.s, decodeJSON(t, []byte(tc.body)), "body"); (len(problems) == 0) != tc.ok {
			t.Errorf("%s against %s: %v, want ok=%v", tc.body, tc.s.Ref, problems, tc.ok)
		}
	}
}
