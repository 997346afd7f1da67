// Command sw-open asks sw-listener to open a port for a connector and waits,
// retrying, until the connector is connected: the one-shot step of the docker
// compose demo, where nothing else can run curl.
//
//	SWL_API_TOKEN=… sw-open -api http://sw-listener:8080 -uid swc-demo \
//	    -port 9000 -connect sw-hello:8000 [-timeout 2m] [-retry 1s]
//
// It retries while the API cannot be reached, while the uid is not connected
// (404) and on a 5xx answer; any other refusal (a bad request, a wrong token)
// ends it at once. A port that is already open with the same mapping (a
// listener that restored it from its state file) counts as done. It prints
// the API's answer on stdout and exits 0, or exits 1 with the reason.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/socket-warp/socket-warp/listener/port"
)

// envToken is the listener's own variable, so one value serves both.
const envToken = "SWL_API_TOKEN"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

type opener struct {
	api    string
	token  string
	req    port.Spec
	client *http.Client
}

// errFinal is an answer that retrying will not change.
var errFinal = errors.New("refused")

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("sw-open", flag.ContinueOnError)
	fs.SetOutput(stderr)
	apiURL := fs.String("api", "http://127.0.0.1:8080", "base `URL` of sw-listener's API")
	uid := fs.String("uid", "", "`UID` of the connector")
	portNum := fs.Int("port", 0, "`port` to open on the listener")
	connect := fs.String("connect", "", "target `host:port` as the connector sees it")
	tokenFile := fs.String("token-file", "", "`file` holding the API token (default: $"+envToken+")")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long")
	retry := fs.Duration("retry", time.Second, "pause between attempts")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "sw-open: "+format+"\n", a...)
		return 2
	}
	host, portStr, err := net.SplitHostPort(*connect)
	connectPort, perr := strconv.Atoi(portStr)
	switch {
	case fs.NArg() != 0:
		return fail("unexpected arguments %q", fs.Args())
	case *uid == "":
		return fail("-uid is required")
	case *portNum < 1 || *portNum > 65535:
		return fail("-port %d is outside 1-65535", *portNum)
	case err != nil || host == "" || perr != nil:
		return fail("-connect %q is not host:port", *connect)
	case *timeout <= 0 || *retry <= 0:
		return fail("-timeout and -retry must be positive")
	}
	token := getenv(envToken)
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintf(stderr, "sw-open: token file: %v\n", err)
			return 1
		}
		token = strings.TrimSpace(string(b))
	}

	tr := &http.Transport{Proxy: nil}
	defer tr.CloseIdleConnections()
	o := &opener{
		api: strings.TrimRight(*apiURL, "/"), token: token,
		req:    port.Spec{UID: *uid, Port: *portNum, ConnectAddress: host, ConnectPort: connectPort},
		client: &http.Client{Transport: tr, Timeout: 10 * time.Second},
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	answer, err := o.openUntilDone(ctx, *retry, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "sw-open: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, strings.TrimSpace(string(answer)))
	return 0
}

// openUntilDone repeats POST /open until it succeeds, fails for good or ctx
// ends. Each new reason to wait is printed once, not at every attempt.
func (o *opener) openUntilDone(ctx context.Context, pause time.Duration, stderr io.Writer) ([]byte, error) {
	var last string
	for {
		answer, err := o.open(ctx)
		if err == nil || errors.Is(err, errFinal) {
			return answer, err
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("gave up: %w (last: %s)", ctx.Err(), err)
		}
		if msg := err.Error(); msg != last {
			fmt.Fprintf(stderr, "sw-open: waiting: %s\n", msg)
			last = msg
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("gave up: %w (last: %s)", ctx.Err(), last)
		case <-t.C:
		}
	}
}

// open makes one attempt. A retryable failure is a plain error; one that
// is not wraps errFinal.
func (o *opener) open(ctx context.Context) ([]byte, error) {
	status, body, err := o.call(ctx, http.MethodPost, "/open", o.req)
	switch {
	case err != nil:
		return nil, err
	case status == http.StatusOK:
		return body, nil
	case status == http.StatusNotFound || status >= 500:
		return nil, fmt.Errorf("POST /open: %d %s", status, apiError(body))
	case status == http.StatusConflict:
		// Already open with this very mapping (restored from the listener's
		// state) is what was asked for.
		if p, ok := o.alreadyOpen(ctx); ok {
			b, err := json.Marshal(p)
			return b, err
		}
	}
	return nil, fmt.Errorf("%w: POST /open: %d %s", errFinal, status, apiError(body))
}

func (o *opener) alreadyOpen(ctx context.Context) (port.Spec, bool) {
	status, body, err := o.call(ctx, http.MethodGet, "/list", nil)
	if err != nil || status != http.StatusOK {
		return port.Spec{}, false
	}
	var ports []port.Spec
	if json.Unmarshal(body, &ports) != nil {
		return port.Spec{}, false
	}
	for _, p := range ports {
		if p.Error == "" && p == o.req {
			return p, true
		}
	}
	return port.Spec{}, false
}

func (o *opener) call(ctx context.Context, method, path string, body any) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, o.api+path, r)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: API URL: %v", errFinal, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if o.token != "" {
		req.Header.Set("Authorization", "Bearer "+o.token)
	}
	resp, err := o.client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return resp.StatusCode, b, nil
}

// apiError returns the API's {"error": …} message, or the body itself.
func apiError(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	return strings.TrimSpace(string(body))
}
