// Package stack runs the built daemons as real processes on loopback, the way
// users run them, for the soak test and the benchmark: a throw-away PKI, the
// environment of each daemon, start and stop, POST /open, and the /proc
// figures (descriptors, RSS, threads, CPU time) both programs measure.
package stack

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/socket-warp/socket-warp/shared/pki"
)

// Binaries returns the daemons' paths: binDir's when both are there,
// otherwise freshly built into tmp.
func Binaries(ctx context.Context, binDir, tmp string) (listener, connector string, err error) {
	l, c := filepath.Join(binDir, "sw-listener"), filepath.Join(binDir, "sw-connector")
	if isFile(l) && isFile(c) {
		return l, c, nil
	}
	fmt.Fprintf(os.Stderr, "%s has no daemons, building them\n", binDir)
	for _, pkg := range []string{"listener/cmd/sw-listener", "connector/cmd/sw-connector"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, "github.com/socket-warp/socket-warp/"+pkg)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return "", "", fmt.Errorf("build %s: %w", pkg, err)
		}
	}
	return filepath.Join(tmp, "sw-listener"), filepath.Join(tmp, "sw-connector"), nil
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// PKIFiles are the PEM files WritePKI made.
type PKIFiles struct{ CA, ServerCert, ServerKey, ClientCert, ClientKey string }

// WritePKI makes a CA, a server certificate for localhost/127.0.0.1 and a
// client certificate with CN uid, in dir.
func WritePKI(dir, uid string) (PKIFiles, error) {
	var f PKIFiles
	ca, err := pki.NewCA("socket-warp " + uid + " CA")
	if err != nil {
		return f, err
	}
	if f.CA, err = ca.WriteCert(dir, "ca"); err != nil {
		return f, err
	}
	server, err := ca.Issue(pki.LeafOptions{CommonName: "localhost", Usage: pki.Server,
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		return f, err
	}
	if f.ServerCert, f.ServerKey, err = server.WriteFiles(dir, "server"); err != nil {
		return f, err
	}
	client, err := ca.Issue(pki.LeafOptions{CommonName: uid, Usage: pki.Client})
	if err != nil {
		return f, err
	}
	f.ClientCert, f.ClientKey, err = client.WriteFiles(dir, "client")
	return f, err
}

// ListenerEnv is sw-listener's environment: everything on 127.0.0.1, its
// state in dir.
func (f PKIFiles) ListenerEnv(dir string, quicPort, apiPort int) []string {
	return []string{
		"SWL_CERT_PATH=" + f.ServerCert, "SWL_KEY_PATH=" + f.ServerKey, "SWL_CA_PATH=" + f.CA,
		"SWL_ADDRS=127.0.0.1", fmt.Sprintf("SWL_PORT=%d", quicPort),
		fmt.Sprintf("APIS_PORT=%d", apiPort), "APIS_ADDRS=127.0.0.1", "SWL_OPEN_ADDRS=127.0.0.1",
		"SWL_STATE_PATH=" + filepath.Join(dir, "state.db"),
	}
}

// ConnectorEnv is sw-connector's environment: no settings file, the
// listener at 127.0.0.1:quicPort, quick reconnects.
func (f PKIFiles) ConnectorEnv(quicPort int) []string {
	return []string{
		"SWC_SETTINGS=", "SWC_CLIENT_CERT_PATH=" + f.ClientCert, "SWC_CLIENT_KEY_PATH=" + f.ClientKey,
		"SWC_CA_CERT_PATH=" + f.CA, "SWC_SERVER_NAME=localhost", "SWC_SERVER_ADDRESS=127.0.0.1",
		fmt.Sprintf("SWC_SERVICE_PORT=%d", quicPort), "SWC_RETRY_MIN=50ms", "SWC_RETRY_MAX=500ms",
	}
}

// FreePort returns a port of network ("tcp" or "udp") on 127.0.0.1 that was
// free a moment ago.
func FreePort(network string) (int, error) {
	if network == "udp" {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer pc.Close()
		return pc.LocalAddr().(*net.UDPAddr).Port, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Daemon is one process, its output in a log file.
type Daemon struct {
	Name string
	Log  string // path of the log file
	cmd  *exec.Cmd
	done chan struct{}
	err  error // of Wait, once done is closed
}

// Start runs bin with args and the environment plus env; its stdout and
// stderr go to dir/name.log.
func Start(name, bin, dir string, args []string, env ...string) (*Daemon, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &Daemon{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		f.Close()
		close(d.done)
	}()
	return d, nil
}

// Pid is the process id.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (d *Daemon) Exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// ExitError describes how an exited process ended, naming its log.
func (d *Daemon) ExitError() error {
	return fmt.Errorf("%s exited: %v (log %s)", d.Name, d.err, d.Log)
}

// Kill ends the process at once and waits for it.
func (d *Daemon) Kill() {
	if !d.Exited() {
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// Terminate sends SIGTERM and returns the exit code.
func (d *Daemon) Terminate() (int, error) {
	if d.Exited() {
		return -1, fmt.Errorf("exited before SIGTERM: %v (log %s)", d.err, d.Log)
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		d.Kill()
		return -1, errors.New("did not exit within 30s of SIGTERM")
	}
	var ee *exec.ExitError
	if errors.As(d.err, &ee) {
		return ee.ExitCode(), nil
	}
	return 0, d.err
}

// CountFDs counts the open file descriptors of pid.
func CountFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}

// ReadStatus returns VmRSS in bytes and the thread count of pid.
func ReadStatus(pid int) (rss int64, threads int, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		switch k {
		case "VmRSS":
			kb, _ := strconv.ParseInt(fields[0], 10, 64)
			rss = kb << 10
		case "Threads":
			threads, _ = strconv.Atoi(fields[0])
		}
	}
	return rss, threads, nil
}

// clockTick is USER_HZ, the unit of the times in /proc/PID/stat; it is 100
// on every Linux architecture Go supports.
const clockTick = 100

// ReadCPU returns the user and system CPU time pid has used so far.
func ReadCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count the fields from the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q, stime %q", pid, f[11], f[12])
	}
	return time.Duration(utime+stime) * time.Second / clockTick, nil
}

// OpenTunnel asks the listener's API to open port → 127.0.0.1:targetPort
// for uid until the connector is bound and the API answers 200, or 20 s
// pass. It gives up early when one of ds exits.
func OpenTunnel(ctx context.Context, apiPort, port int, uid string, targetPort int, ds ...*Daemon) error {
	body := fmt.Sprintf(`{"uid":%q,"port":%d,"connect_address":"127.0.0.1","connect_port":%d}`, uid, port, targetPort)
	url := fmt.Sprintf("http://127.0.0.1:%d/open", apiPort)
	deadline := time.Now().Add(20 * time.Second)
	last := "no answer"
	for time.Now().Before(deadline) {
		for _, d := range ds {
			if d.Exited() {
				return d.ExitError()
			}
		}
		resp, err := http.Post(url, "application/json", strings.NewReader(body))
		if err == nil {
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(msg))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("open port %d: %s", port, last)
}

// Goroutines reads the total from the goroutine profile of a pprof endpoint.
func Goroutines(addr string) (int, error) {
	if addr == "" {
		return 0, errors.New("no pprof endpoint")
	}
	resp, err := http.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		return 0, err
	}
	n, ok := strings.CutPrefix(strings.TrimSpace(line), "goroutine profile: total ")
	if !ok {
		return 0, fmt.Errorf("goroutine profile starts %q", line)
	}
	return strconv.Atoi(n)
}
