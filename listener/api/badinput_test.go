package api

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/listener/port"
)

// recorder is a Service that accepts everything and records what reached it.
type recorder struct {
	mu     sync.Mutex
	opened []port.Spec
	closed []int
}

func (s *recorder) OpenPort(_ context.Context, p port.Spec) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opened = append(s.opened, p)
	return nil
}

func (s *recorder) ClosePort(_ context.Context, number int) (port.Spec, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = append(s.closed, number)
	return port.Spec{UID: "swc-1", Port: number, ConnectAddress: "127.0.0.1", ConnectPort: 22}, nil
}

func (s *recorder) List() []port.Spec { return nil }

func (s *recorder) Connections() []port.Connection { return nil }

func (s *recorder) Live(int) *port.Live { return nil }

func (s *recorder) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.opened) + len(s.closed)
}

// send is call with a Content-Type ("" sends none) and a body of any bytes.
func send(t *testing.T, method, url, ctype, body string) result {
	t.Helper()
	r, _ := do(t, method, url, body, map[string]string{"Content-Type": ctype})
	return r
}

// jsonType is the Content-Type of a JSON body.
const jsonType = "application/json"

// openWith is a valid /open body with one field's raw JSON value replaced
// (or removed, when value is ""); an optional field is added.
func openWith(field, value string) string {
	fields := []struct{ k, v string }{
		{"uid", `"swc-1"`}, {"port", `8022`}, {"connect_address", `"127.0.0.1"`}, {"connect_port", `22`},
	}
	if field == "proxy_protocol" {
		fields = append(fields, struct{ k, v string }{field, ""})
	}
	var parts []string
	for _, f := range fields {
		v := f.v
		if f.k == field {
			v = value
		}
		if v != "" {
			parts = append(parts, `"`+f.k+`":`+v)
		}
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// TestBadInput sends malformed requests to the real handler: each one is
// answered with its 4xx and a JSON {"error"} that says what is wrong, quickly,
// and none reaches the service.
func TestBadInput(t *testing.T) {
	const valid = `{"uid":"swc-1","port":8022,"connect_address":"127.0.0.1","connect_port":22}`
	type tc struct {
		name, method, path, ctype, body string
		status                          int
		errorHas                        []string
	}
	cases := []tc{
		// Not an object, or not one object.
		{name: "empty body", body: ``, errorHas: []string{"empty"}},
		{name: "whitespace only", body: " \n\t", errorHas: []string{"empty"}},
		{name: "null body", body: `null`, errorHas: []string{"missing field(s): uid, port, connect_address, connect_port"}},
		{name: "array body", body: `[` + valid + `]`, errorHas: []string{"must be an object, not array"}},
		{name: "number body", body: `8022`, errorHas: []string{"must be an object, not number"}},
		{name: "bool body", body: `true`, errorHas: []string{"must be an object, not bool"}},
		{name: "string body", body: `"swc-1"`, errorHas: []string{"must be an object, not string"}},
		{name: "truncated object", body: valid[:20], errorHas: []string{"malformed JSON", "middle of the object"}},
		{name: "trailing garbage", body: valid + `garbage`, errorHas: []string{"malformed JSON", "after the object"}},
		{name: "second object", body: valid + valid, errorHas: []string{"after the object"}},
		{name: "trailing comma", body: valid[:len(valid)-1] + `,}`, errorHas: []string{"malformed JSON at byte"}},
		{name: "single quotes", body: `{'uid':'swc-1'}`, errorHas: []string{"malformed JSON at byte"}},
		{name: "form encoded", body: `uid=swc-1&port=8022`, errorHas: []string{"malformed JSON"}},
		{name: "deeply nested array", body: strings.Repeat("[", 10000), errorHas: []string{"malformed JSON"}},
		{name: "nesting past the limit", body: strings.Repeat("[", 20000), errorHas: []string{"malformed JSON", "depth"}},
		{name: "deeply nested field", body: `{"uid":` + strings.Repeat(`{"a":`, 12000), errorHas: []string{"malformed JSON", "depth"}},

		// Missing and extra fields.
		{name: "missing uid", body: openWith("uid", ""), errorHas: []string{"missing field(s): uid"}},
		{name: "missing port", body: openWith("port", ""), errorHas: []string{"missing field(s): port"}},
		{name: "missing connect_address", body: openWith("connect_address", ""), errorHas: []string{"missing field(s): connect_address"}},
		{name: "missing connect_port", body: openWith("connect_port", ""), errorHas: []string{"missing field(s): connect_port"}},
		{name: "empty object", body: `{}`, errorHas: []string{"missing field(s): uid, port, connect_address, connect_port"}},
		// null leaves the field unset: it is missing, not zero.
		{name: "null port", body: openWith("port", `null`), errorHas: []string{"missing field(s): port"}},
		{name: "null uid", body: openWith("uid", `null`), errorHas: []string{"missing field(s): uid"}},
		{name: "extra field", body: valid[:len(valid)-1] + `,"color":"red"}`, errorHas: []string{`unknown field "color"`}},
		// Keys match exactly: encoding/json alone would take these for uid, port….
		{name: "key in upper case", body: `{"UID":"swc-1","port":8022,"connect_address":"127.0.0.1","connect_port":22}`, errorHas: []string{`unknown field "UID"`}},
		{name: "key in mixed case", body: `{"uid":"swc-1","Port":8022,"connect_address":"127.0.0.1","connect_port":22}`, errorHas: []string{`unknown field "Port"`}},
		{name: "every key in another case", body: `{"UID":"swc-1","Port":8022,"Connect_Address":"127.0.0.1","CONNECT_PORT":22}`, errorHas: []string{`unknown field "UID"`}},
		{name: "key in another case with a bad value", body: `{"UID":1,"port":8022,"connect_address":"127.0.0.1","connect_port":22}`, errorHas: []string{`unknown field "UID"`}},
		{name: "proxy_protocol key in another case", body: valid[:len(valid)-1] + `,"Proxy_Protocol":"v1"}`, errorHas: []string{`unknown field "Proxy_Protocol"`}},

		// Wrong types.
		{name: "string port", body: openWith("port", `"8022"`), errorHas: []string{"field port must be a whole number, not string"}},
		{name: "bool port", body: openWith("port", `true`), errorHas: []string{"field port must be a whole number, not bool"}},
		{name: "array port", body: openWith("port", `[8022]`), errorHas: []string{"field port must be a whole number, not array"}},
		{name: "object port", body: openWith("port", `{"n":8022}`), errorHas: []string{"field port must be a whole number, not object"}},
		{name: "string connect_port", body: openWith("connect_port", `"22"`), errorHas: []string{"field connect_port must be a whole number, not string"}},
		{name: "number uid", body: openWith("uid", `1`), errorHas: []string{"field uid must be a string, not number"}},
		{name: "bool uid", body: openWith("uid", `false`), errorHas: []string{"field uid must be a string, not bool"}},
		{name: "array uid", body: openWith("uid", `["swc-1"]`), errorHas: []string{"field uid must be a string, not array"}},
		{name: "object uid", body: openWith("uid", `{}`), errorHas: []string{"field uid must be a string, not object"}},
		{name: "number connect_address", body: openWith("connect_address", `127`), errorHas: []string{"field connect_address must be a string, not number"}},

		// Numbers out of range or not whole.
		{name: "port -1", body: openWith("port", `-1`), errorHas: []string{"port -1 is outside 1-65535"}},
		{name: "port 0", body: openWith("port", `0`), errorHas: []string{"port 0 is outside 1-65535"}},
		{name: "port 65536", body: openWith("port", `65536`), errorHas: []string{"port 65536 is outside 1-65535"}},
		{name: "port 1e20", body: openWith("port", `1e20`), errorHas: []string{"field port must be a whole number, not number 1e20"}},
		{name: "port past int64", body: openWith("port", `99999999999999999999`), errorHas: []string{"field port must be a whole number, not number 99999999999999999999"}},
		{name: "port below int64", body: openWith("port", `-99999999999999999999`), errorHas: []string{"field port must be a whole number"}},
		{name: "port 1.5", body: openWith("port", `1.5`), errorHas: []string{"field port must be a whole number, not number 1.5"}},
		{name: "port 8022.0", body: openWith("port", `8022.0`), errorHas: []string{"field port must be a whole number"}},
		{name: "port 1e3", body: openWith("port", `1e3`), errorHas: []string{"field port must be a whole number"}},
		{name: "port with leading zero", body: openWith("port", `08022`), errorHas: []string{"malformed JSON at byte"}},
		{name: "port hex", body: openWith("port", `0x1f`), errorHas: []string{"malformed JSON at byte"}},
		{name: "connect_port -1", body: openWith("connect_port", `-1`), errorHas: []string{"connect_port -1 is outside 1-65535"}},
		{name: "connect_port 0", body: openWith("connect_port", `0`), errorHas: []string{"connect_port 0 is outside 1-65535"}},
		{name: "connect_port 65536", body: openWith("connect_port", `65536`), errorHas: []string{"connect_port 65536 is outside 1-65535"}},
		{name: "connect_port 1e20", body: openWith("connect_port", `1e20`), errorHas: []string{"field connect_port must be a whole number"}},

		// Strings that are not usable.
		{name: "empty uid", body: openWith("uid", `""`), errorHas: []string{"uid is empty"}},
		{name: "blank uid", body: openWith("uid", `"   "`), errorHas: []string{`uid "   " is blank`}},
		{name: "uid with a tab", body: openWith("uid", `"swc\t1"`), errorHas: []string{`uid "swc\t1" has a non-printable character`}},
		{name: "uid too long", body: openWith("uid", `"`+strings.Repeat("u", 129)+`"`), errorHas: []string{"uid is longer than 128 bytes"}},
		{name: "blank connect_address", body: openWith("connect_address", `"  "`), errorHas: []string{"connect_address is empty"}},
		{name: "connect_address with a path", body: openWith("connect_address", `"host/x"`), errorHas: []string{"is not a host name or IP address"}},
		{name: "connect_address with a NUL", body: openWith("connect_address", `"db\u0000.internal"`), errorHas: []string{"is not a host name or IP address"}},
		{name: "connect_address with an escape", body: openWith("connect_address", `"db\u001b[31m"`), errorHas: []string{"is not a host name or IP address"}},
		{name: "connect_address too long", body: openWith("connect_address", `"`+strings.Repeat("a", 254)+`"`), errorHas: []string{"is not a host name or IP address"}},
		// Targets no connector could ever dial.
		{name: "connect_address with a port", body: openWith("connect_address", `"127.0.0.1:80"`), errorHas: []string{`connect_address "127.0.0.1:80" is not a host name or IP address`, "connect_port"}},
		{name: "connect_address name with a port", body: openWith("connect_address", `"db.internal:5432"`), errorHas: []string{`connect_address "db.internal:5432" is not`, "connect_port"}},
		{name: "connect_address in brackets", body: openWith("connect_address", `"[::1]"`), errorHas: []string{`connect_address "[::1]" is not a host name or IP address`, "brackets"}},
		{name: "connect_address in brackets with a port", body: openWith("connect_address", `"[::1]:22"`), errorHas: []string{`connect_address "[::1]:22" is not`}},
		{name: "connect_address with a zone", body: openWith("connect_address", `"fe80::1%eth0"`), errorHas: []string{`connect_address "fe80::1%eth0" is not`, "zone"}},
		{name: "connect_address bad IPv6", body: openWith("connect_address", `"1::2::3"`), errorHas: []string{`connect_address "1::2::3" is not`}},
		{name: "connect_address IPv4 out of range", body: openWith("connect_address", `"10.0.0.256"`), errorHas: []string{`connect_address "10.0.0.256" is not`}},
		{name: "connect_address five numbers", body: openWith("connect_address", `"1.2.3.4.5"`), errorHas: []string{`connect_address "1.2.3.4.5" is not`}},
		{name: "connect_address IPv4 with leading zeros", body: openWith("connect_address", `"010.0.0.1"`), errorHas: []string{`connect_address "010.0.0.1" is not`}},
		{name: "connect_address starting with a hyphen", body: openWith("connect_address", `"-db.internal"`), errorHas: []string{`connect_address "-db.internal" is not`}},
		{name: "connect_address label ending with a hyphen", body: openWith("connect_address", `"db-.internal"`), errorHas: []string{`connect_address "db-.internal" is not`}},
		{name: "connect_address empty label", body: openWith("connect_address", `"db..internal"`), errorHas: []string{`connect_address "db..internal" is not`}},
		{name: "connect_address leading dot", body: openWith("connect_address", `".internal"`), errorHas: []string{`connect_address ".internal" is not`}},
		{name: "connect_address label of 64", body: openWith("connect_address", `"`+strings.Repeat("a", 64)+`.internal"`), errorHas: []string{"is not a host name or IP address"}},
		{name: "connect_address non-ASCII", body: openWith("connect_address", `"bücher.example"`), errorHas: []string{"is not a host name or IP address"}},
		{name: "connect_address a URL", body: openWith("connect_address", `"http://db.internal"`), errorHas: []string{"is not a host name or IP address"}},
		{name: "connect_address with spaces around", body: openWith("connect_address", `" db.internal "`), errorHas: []string{"is not a host name or IP address"}},
		{name: "invalid UTF-8 in uid", body: openWith("uid", "\"swc-\xff\xfe\""), errorHas: []string{"not valid UTF-8"}},
		{name: "invalid UTF-8 in connect_address", body: openWith("connect_address", "\"host\xc3\x28\""), errorHas: []string{"not valid UTF-8"}},
		{name: "truncated UTF-8 sequence", body: openWith("uid", "\"swc-\xe2\x82\""), errorHas: []string{"not valid UTF-8"}},
		{name: "UTF-16 surrogate as UTF-8", body: openWith("uid", "\"\xed\xa0\x80\""), errorHas: []string{"not valid UTF-8"}},
		{name: "invalid UTF-8 in a key", body: "{\"ui\xffd\":\"swc-1\"}", errorHas: []string{"not valid UTF-8"}},
		{name: "Latin-1 body", body: openWith("uid", "\"caf\xe9\""), errorHas: []string{"not valid UTF-8"}},

		// proxy_protocol: "v1", "v2", or absent / "" / null for none.
		{name: "proxy_protocol v3", body: openWith("proxy_protocol", `"v3"`), errorHas: []string{`proxy_protocol "v3" is not "v1" or "v2" (leave it out for none)`}},
		{name: "proxy_protocol upper case", body: openWith("proxy_protocol", `"V2"`), errorHas: []string{`proxy_protocol "V2" is not "v1" or "v2"`}},
		{name: "proxy_protocol without v", body: openWith("proxy_protocol", `"2"`), errorHas: []string{`proxy_protocol "2" is not`}},
		{name: "proxy_protocol with spaces", body: openWith("proxy_protocol", `" v1"`), errorHas: []string{`proxy_protocol " v1" is not`}},
		{name: "proxy_protocol off", body: openWith("proxy_protocol", `"off"`), errorHas: []string{`proxy_protocol "off" is not`}},
		{name: "proxy_protocol number", body: openWith("proxy_protocol", `2`), errorHas: []string{"field proxy_protocol must be a string, not number"}},
		{name: "proxy_protocol bool", body: openWith("proxy_protocol", `true`), errorHas: []string{"field proxy_protocol must be a string, not bool"}},
		{name: "proxy_protocol object", body: openWith("proxy_protocol", `{"version":2}`), errorHas: []string{"field proxy_protocol must be a string, not object"}},
		{name: "proxy_protocol control character", body: openWith("proxy_protocol", `"v1\u001b"`), errorHas: []string{`proxy_protocol "v1\x1b" is not`}},
		{name: "proxy_protocol and a bad port", body: `{"uid":"swc-1","port":0,"connect_address":"a","connect_port":22,"proxy_protocol":"v9"}`,
			errorHas: []string{"port 0 is outside 1-65535", `proxy_protocol "v9"`}},

		// A body is JSON and says so: a web page can send text/plain or a
		// form to another site without asking it first, never JSON.
		{name: "text/plain", ctype: "text/plain", body: valid, status: http.StatusUnsupportedMediaType,
			errorHas: []string{`Content-Type "text/plain" is not application/json`, "Content-Type: application/json"}},
		{name: "form type (curl -d without -H)", ctype: "application/x-www-form-urlencoded", body: valid, status: http.StatusUnsupportedMediaType,
			errorHas: []string{`Content-Type "application/x-www-form-urlencoded" is not application/json`}},
		{name: "multipart form", ctype: "multipart/form-data; boundary=x", body: valid, status: http.StatusUnsupportedMediaType, errorHas: []string{"is not application/json"}},
		{name: "no Content-Type", ctype: "none", body: valid, status: http.StatusUnsupportedMediaType, errorHas: []string{"no Content-Type", "Content-Type: application/json"}},
		{name: "XML", ctype: "application/xml", body: `<open><uid>swc-1</uid><port>8022</port></open>`, status: http.StatusUnsupportedMediaType, errorHas: []string{"is not application/json"}},
		{name: "JSON with another charset", ctype: "application/json; charset=iso-8859-1", body: valid, status: http.StatusUnsupportedMediaType, errorHas: []string{"charset"}},
		{name: "unparsable Content-Type", ctype: "application/json; charset", body: valid, status: http.StatusUnsupportedMediaType, errorHas: []string{"is not application/json"}},
		{name: "JSON type, bad JSON", ctype: "application/json", body: `{"uid":`, errorHas: []string{"malformed JSON"}},
		{name: "text/plain, missing field", ctype: "text/plain", body: openWith("port", ""), status: http.StatusUnsupportedMediaType, errorHas: []string{"is not application/json"}},

		// Size.
		{name: "just over the limit", body: `{"uid":"` + strings.Repeat("x", MaxBodyBytes) + `"}`, status: http.StatusRequestEntityTooLarge, errorHas: []string{"larger than 65536 bytes"}},
		{name: "10 MiB body", body: `{"uid":"` + strings.Repeat("x", 10<<20) + `"}`, status: http.StatusRequestEntityTooLarge, errorHas: []string{"larger than"}},
		{name: "10 MiB of whitespace after the object", body: valid + strings.Repeat(" ", 10<<20), status: http.StatusRequestEntityTooLarge, errorHas: []string{"larger than"}},
		{name: "10 MiB of nesting", body: strings.Repeat("[", 10<<20), status: http.StatusRequestEntityTooLarge, errorHas: []string{"larger than"}},

		// DELETE /close, the same families.
		{name: "close empty body", method: http.MethodDelete, body: ``, errorHas: []string{"empty"}},
		{name: "close null body", method: http.MethodDelete, body: `null`, errorHas: []string{"missing field(s): port"}},
		{name: "close array body", method: http.MethodDelete, body: `[8022]`, errorHas: []string{"must be an object, not array"}},
		{name: "close bare number", method: http.MethodDelete, body: `8022`, errorHas: []string{"must be an object, not number"}},
		{name: "close missing port", method: http.MethodDelete, body: `{}`, errorHas: []string{"missing field(s): port"}},
		{name: "close null port", method: http.MethodDelete, body: `{"port":null}`, errorHas: []string{"missing field(s): port"}},
		{name: "close extra field", method: http.MethodDelete, body: `{"port":8022,"uid":"swc-1"}`, errorHas: []string{`unknown field "uid"`}},
		{name: "close string port", method: http.MethodDelete, body: `{"port":"8022"}`, errorHas: []string{"field port must be a whole number, not string"}},
		{name: "close bool port", method: http.MethodDelete, body: `{"port":true}`, errorHas: []string{"not bool"}},
		{name: "close array port", method: http.MethodDelete, body: `{"port":[8022]}`, errorHas: []string{"not array"}},
		{name: "close object port", method: http.MethodDelete, body: `{"port":{}}`, errorHas: []string{"not object"}},
		{name: "close port -1", method: http.MethodDelete, body: `{"port":-1}`, errorHas: []string{"port -1 is outside 1-65535"}},
		{name: "close port 0", method: http.MethodDelete, body: `{"port":0}`, errorHas: []string{"port 0 is outside 1-65535"}},
		{name: "close port 65536", method: http.MethodDelete, body: `{"port":65536}`, errorHas: []string{"port 65536 is outside 1-65535"}},
		{name: "close port 1e20", method: http.MethodDelete, body: `{"port":1e20}`, errorHas: []string{"whole number, not number 1e20"}},
		{name: "close port past int64", method: http.MethodDelete, body: `{"port":99999999999999999999}`, errorHas: []string{"whole number"}},
		{name: "close port 1.5", method: http.MethodDelete, body: `{"port":1.5}`, errorHas: []string{"whole number, not number 1.5"}},
		{name: "close trailing garbage", method: http.MethodDelete, body: `{"port":8022}x`, errorHas: []string{"after the object"}},
		{name: "close truncated", method: http.MethodDelete, body: `{"port":80`, errorHas: []string{"middle of the object"}},
		{name: "close invalid UTF-8", method: http.MethodDelete, body: "{\"port\":8022,\"\xff\":1}", errorHas: []string{"not valid UTF-8"}},
		{name: "close deeply nested", method: http.MethodDelete, body: strings.Repeat("[", 20000), errorHas: []string{"malformed JSON", "depth"}},
		{name: "close text/plain", method: http.MethodDelete, ctype: "text/plain", body: `{"port":8022}`, status: http.StatusUnsupportedMediaType, errorHas: []string{"is not application/json"}},
		{name: "close form type", method: http.MethodDelete, ctype: "application/x-www-form-urlencoded", body: `{"port":8022}`, status: http.StatusUnsupportedMediaType, errorHas: []string{"is not application/json"}},
		{name: "close key in another case", method: http.MethodDelete, body: `{"PORT":8022}`, errorHas: []string{`unknown field "PORT"`}},
		{name: "close 10 MiB body", method: http.MethodDelete, body: `{"port":8022` + strings.Repeat(" ", 10<<20) + `}`, status: http.StatusRequestEntityTooLarge, errorHas: []string{"larger than"}},
	}

	svc := &recorder{}
	url := serve(t, svc)
	for _, c := range cases {
		if c.method == "" {
			c.method, c.path = http.MethodPost, "/open"
		} else if c.path == "" {
			c.path = "/close"
		}
		if c.status == 0 {
			c.status = http.StatusBadRequest
		}
		switch c.ctype {
		case "":
			c.ctype = jsonType
		case "none":
			c.ctype = ""
		}
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			r := send(t, c.method, url+c.path, c.ctype, c.body)
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("answered after %v", d)
			}
			if r.status != c.status {
				t.Fatalf("status %d (%s), want %d", r.status, r.body, c.status)
			}
			msg := r.errorText(t)
			for _, want := range c.errorHas {
				if !strings.Contains(msg, want) {
					t.Fatalf("error %q does not say %q", msg, want)
				}
			}
		})
	}
	if n := svc.calls(); n != 0 {
		t.Fatalf("malformed requests reached the service %d times: opened %+v, closed %v", n, svc.opened, svc.closed)
	}
}

// TestAcceptedOddities pins what is accepted though unusual, so that a change
// is a decision and not an accident.
func TestAcceptedOddities(t *testing.T) {
	want := port.Spec{UID: "swc-1", Port: 8022, ConnectAddress: "127.0.0.1", ConnectPort: 22}
	target := func(host string) port.Spec { p := want; p.ConnectAddress = host; return p }
	for _, c := range []struct {
		name, ctype, body string
		want              port.Spec
	}{
		// JSON by any spelling of its media type.
		{"charset utf-8", "application/json; charset=utf-8", openWith("", ""), want},
		{"upper case", "Application/JSON;Charset=UTF-8", openWith("", ""), want},
		// encoding/json keeps the last of duplicate keys. That is acceptable:
		// the value kept is the one validated, logged and answered back, so
		// nothing acts on the other one.
		{"duplicate key, last wins", jsonType, `{"uid":"swc-1","port":1,"port":8022,"connect_address":"127.0.0.1","connect_port":22}`, want},
		// Escapes are JSON, and a non-ASCII uid in valid UTF-8 is fine.
		{"escaped and non-ASCII", jsonType, `{"uid":"sw\u0063-ü","port":8022,"connect_address":"127.0.0.1","connect_port":22}`,
			port.Spec{UID: "swc-ü", Port: 8022, ConnectAddress: "127.0.0.1", ConnectPort: 22}},
		{"uid with inner spaces", jsonType, openWith("uid", `" swc 1"`), port.Spec{UID: " swc 1", Port: 8022, ConnectAddress: "127.0.0.1", ConnectPort: 22}},
		{"whitespace around", jsonType, "\r\n\t " + openWith("", "") + "\n\n", want},
		// proxy_protocol is optional: "" and null mean none, like absent.
		{"proxy_protocol empty", jsonType, openWith("proxy_protocol", `""`), want},
		{"proxy_protocol null", jsonType, openWith("proxy_protocol", `null`), want},
		{"proxy_protocol v1", jsonType, openWith("proxy_protocol", `"v1"`),
			port.Spec{UID: "swc-1", Port: 8022, ConnectAddress: "127.0.0.1", ConnectPort: 22, ProxyProtocol: port.ProxyV1}},
		{"proxy_protocol v2", jsonType, openWith("proxy_protocol", `"v2"`),
			port.Spec{UID: "swc-1", Port: 8022, ConnectAddress: "127.0.0.1", ConnectPort: 22, ProxyProtocol: port.ProxyV2}},
		// Every kind of target a connector can dial.
		{"connect_address a name", jsonType, openWith("connect_address", `"db-1.internal"`), target("db-1.internal")},
		{"connect_address one label", jsonType, openWith("connect_address", `"db"`), target("db")},
		{"connect_address with a trailing dot", jsonType, openWith("connect_address", `"db.internal."`), target("db.internal.")},
		{"connect_address with an underscore (Docker names)", jsonType, openWith("connect_address", `"my_db.internal"`), target("my_db.internal")},
		{"connect_address labels starting with digits", jsonType, openWith("connect_address", `"3com.1e100.net"`), target("3com.1e100.net")},
		{"connect_address label of 63", jsonType, openWith("connect_address", `"`+strings.Repeat("a", 63)+`.internal"`), target(strings.Repeat("a", 63) + ".internal")},
		{"connect_address IPv6", jsonType, openWith("connect_address", `"2001:db8::1"`), target("2001:db8::1")},
		{"connect_address IPv6 loopback", jsonType, openWith("connect_address", `"::1"`), target("::1")},
		{"connect_address IPv4-mapped IPv6", jsonType, openWith("connect_address", `"::ffff:10.0.0.1"`), target("::ffff:10.0.0.1")},
	} {
		t.Run(c.name, func(t *testing.T) {
			svc := &recorder{}
			url := serve(t, svc)
			r := send(t, http.MethodPost, url+"/open", c.ctype, c.body)
			if r.status != http.StatusOK {
				t.Fatalf("status %d (%s), want 200", r.status, r.body)
			}
			if len(svc.opened) != 1 || svc.opened[0] != c.want {
				t.Fatalf("service opened %+v, want %+v", svc.opened, c.want)
			}
		})
	}
	t.Run("duplicate key with a bad first value", func(t *testing.T) {
		svc := &recorder{}
		url := serve(t, svc)
		r := send(t, http.MethodPost, url+"/open", jsonType, `{"uid":"swc-1","port":"x","port":8022,"connect_address":"127.0.0.1","connect_port":22}`)
		if msg := r.errorText(t); r.status != http.StatusBadRequest || !strings.Contains(msg, "field port must be a whole number") {
			t.Fatalf("%d %q, want 400 for the bad value even if a later one is good", r.status, msg)
		}
		if svc.calls() != 0 {
			t.Fatal("reached the service")
		}
	})
}
