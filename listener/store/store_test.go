package store

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/socket-warp/socket-warp/listener/port"
	"github.com/socket-warp/socket-warp/shared/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }

// lockWait is the lock timeout of the tests: long enough for a loaded
// machine, short enough for the test of a locked file to end soon.
const lockWait = time.Second

func open(t *testing.T, path string) *Bolt {
	t.Helper()
	s, err := OpenBolt(path, lockWait)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func list(t *testing.T, s Store) []port.Spec {
	t.Helper()
	snap, err := s.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var got []port.Spec
	for _, r := range snap.Ports {
		got = append(got, r.Spec)
	}
	return got
}

func del(t *testing.T, s Store, number int) error {
	t.Helper()
	_, _, err := s.Delete(t.Context(), number, 0)
	return err
}

// put stores p over whatever record its port has.
func put(t *testing.T, s Store, p port.Spec) error {
	t.Helper()
	snap, err := s.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var prev int64
	for _, r := range snap.Ports {
		if r.Port == p.Port {
			prev = r.Revision
		}
	}
	_, err = s.Put(t.Context(), p, prev)
	return err
}

func TestBoltKeepsPortsAcrossReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "sub")
	path := filepath.Join(dir, "state.db")
	s := open(t, path)

	a := port.Spec{UID: "swc-1", Port: 8080, ConnectAddress: "db.internal", ConnectPort: 5432}
	b := port.Spec{UID: "swc-2", Port: 443, ConnectAddress: "10.0.0.7", ConnectPort: 8443}
	c := port.Spec{UID: "swc-1", Port: 65535, ConnectAddress: "x", ConnectPort: 1}
	for _, p := range []port.Spec{a, b, c, {UID: "swc-9", Port: 8080, ConnectAddress: "old", ConnectPort: 1}} {
		if err := put(t, s, p); err != nil {
			t.Fatal(err)
		}
	}
	// Put replaces; Error is not kept.
	a.Error = "listed only"
	if err := put(t, s, a); err != nil {
		t.Fatal(err)
	}
	a.Error = ""
	if err := del(t, s, c.Port); err != nil {
		t.Fatal(err)
	}
	if err := del(t, s, c.Port); !errors.Is(err, port.ErrNotOpen) {
		t.Fatalf("deleting an absent port: %v, want %v", err, port.ErrNotOpen)
	}
	want := []port.Spec{b, a} // sorted by port
	if got := list(t, s); !reflect.DeepEqual(got, want) {
		t.Fatalf("List = %+v, want %+v", got, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	for name, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, path: 0o600} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %s, want %s", name, fi.Mode(), want)
		}
	}

	// The value is JSON with its version.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockWait, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	err = db.View(func(tx *bolt.Tx) error {
		return json.Unmarshal(tx.Bucket(bucketPorts).Get([]byte{0x1f, 0x90}), &rec)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	wantRec := map[string]any{"version": 1.0, "uid": "swc-1", "port": 8080.0, "connect_address": "db.internal", "connect_port": 5432.0}
	if !reflect.DeepEqual(rec, wantRec) {
		t.Fatalf("record of port 8080: %v, want %v", rec, wantRec)
	}

	s = open(t, path)
	defer s.Close()
	if got := list(t, s); !reflect.DeepEqual(got, want) {
		t.Fatalf("List after reopening = %+v, want %+v", got, want)
	}
}

func TestBoltRefusesBadPorts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, path)
	defer s.Close()
	for _, n := range []int{0, -1, 65536} {
		_, err := s.Put(t.Context(), port.Spec{UID: "u", Port: n, ConnectAddress: "a", ConnectPort: 1}, 0)
		testutil.WantErr(t, err, path, "outside 1-65535")
		testutil.WantErr(t, del(t, s, n), path, "outside 1-65535")
	}
}

// writeRaw stores value under key in a new bbolt file at path, bypassing Put.
func writeRaw(t *testing.T, path string, key, value []byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockWait})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketPorts)
		if err != nil {
			return err
		}
		return b.Put(key, value)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBoltRefusesWhatItCannotRead: a damaged file, or a record this version
// does not understand, is an error naming the file, never an empty store.
func TestBoltRefusesWhatItCannotRead(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		write func(path string)
		want  []string
	}{
		{"random bytes", func(path string) {
			if err := os.WriteFile(path, testutil.RandomBytes(t, 16<<10), 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{"corrupt or not a bbolt file", "invalid database"}},
		{"an empty file", func(path string) {
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{"is empty (0 bytes)", "remove it to start with no ports", "restore it from a backup"}},
		{"a short text file", func(path string) {
			if err := os.WriteFile(path, []byte("ports: 8080\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{"corrupt or not a bbolt file"}},
		{"a newer record version", func(path string) {
			writeRaw(t, path, []byte{0x1f, 0x90}, []byte(`{"version":3,"uid":"u","port":8080,"connect_address":"a","connect_port":1}`))
		}, []string{"port 8080", "record version 3", "versions 1 to 2"}},
		{"record version 0", func(path string) {
			writeRaw(t, path, []byte{0x1f, 0x90}, []byte(`{"uid":"u","port":8080,"connect_address":"a","connect_port":1}`))
		}, []string{"port 8080", "record version 0"}},
		{"an unknown proxy_protocol", func(path string) {
			writeRaw(t, path, []byte{0x1f, 0x90}, []byte(`{"version":2,"uid":"u","port":8080,"connect_address":"a","connect_port":1,"proxy_protocol":"v7"}`))
		}, []string{"port 8080", `proxy_protocol "v7"`}},
		{"a record that is not JSON", func(path string) {
			writeRaw(t, path, []byte{0x1f, 0x90}, []byte(`{"version":1,`))
		}, []string{"port 8080", "does not decode"}},
		{"a record of another port", func(path string) {
			writeRaw(t, path, []byte{0x1f, 0x90}, []byte(`{"version":1,"uid":"u","port":80,"connect_address":"a","connect_port":1}`))
		}, []string{"port 8080", "names port 80"}},
		{"a key that is no port", func(path string) {
			writeRaw(t, path, []byte("eighty"), []byte(`{"version":1}`))
		}, []string{"is not a port number"}},
		{"another program's bbolt file", func(path string) {
			db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockWait})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("key")); return err }); err != nil {
				t.Fatal(err)
			}
		}, []string{`holds a bucket "key"`, "another program"}},
		{"a directory", func(path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}, []string{"is a directory"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name, "state.db")
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				t.Fatal(err)
			}
			tc.write(path)
			s, err := OpenBolt(path, lockWait)
			if s != nil {
				s.Close()
				t.Fatal("OpenBolt returned a store along with an error")
			}
			testutil.WantErr(t, err, append([]string{"state file " + path}, tc.want...)...)
		})
	}
}

// TestBoltLocked: a second opener of the same file gives up with an error
// naming the file instead of waiting for ever; once the first closes, the
// file opens.
func TestBoltLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	first := open(t, path)
	_, err := OpenBolt(path, 100*time.Millisecond)
	testutil.WantErr(t, err, "state file "+path, "locked by another process")
	if !errors.Is(err, ErrLocked) {
		t.Errorf("error %v does not wrap ErrLocked", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	open(t, path).Close()
}

// TestBoltProxyProtocol: a port with PROXY protocol is kept as a version 2
// record, one without stays version 1, and a version 1 record written before
// the field existed loads as PROXY protocol off.
func TestBoltProxyProtocol(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	// A file as the listener before PROXY protocol wrote it.
	writeRaw(t, path, []byte{0x1f, 0x90}, []byte(`{"version":1,"uid":"swc-1","port":8080,"connect_address":"db","connect_port":5432}`))
	s := open(t, path)
	old := port.Spec{UID: "swc-1", Port: 8080, ConnectAddress: "db", ConnectPort: 5432}
	if got := list(t, s); !reflect.DeepEqual(got, []port.Spec{old}) {
		t.Fatalf("old record: List = %+v, want %+v", got, old)
	}
	v1 := port.Spec{UID: "swc-1", Port: 8081, ConnectAddress: "web", ConnectPort: 80, ProxyProtocol: port.ProxyV1}
	v2 := port.Spec{UID: "swc-2", Port: 8443, ConnectAddress: "web", ConnectPort: 443, ProxyProtocol: port.ProxyV2}
	plain := port.Spec{UID: "swc-2", Port: 9000, ConnectAddress: "x", ConnectPort: 9}
	for _, p := range []port.Spec{v1, v2, plain} {
		if err := put(t, s, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockWait, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	raw := map[int]map[string]any{}
	err = db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPorts).ForEach(func(k, v []byte) error {
			var rec map[string]any
			if err := json.Unmarshal(v, &rec); err != nil {
				return err
			}
			raw[int(k[0])<<8|int(k[1])] = rec
			return nil
		})
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	for port, want := range map[int]map[string]any{
		8080: {"version": 1.0, "uid": "swc-1", "port": 8080.0, "connect_address": "db", "connect_port": 5432.0},
		8081: {"version": 2.0, "uid": "swc-1", "port": 8081.0, "connect_address": "web", "connect_port": 80.0, "proxy_protocol": "v1"},
		8443: {"version": 2.0, "uid": "swc-2", "port": 8443.0, "connect_address": "web", "connect_port": 443.0, "proxy_protocol": "v2"},
		9000: {"version": 1.0, "uid": "swc-2", "port": 9000.0, "connect_address": "x", "connect_port": 9.0},
	} {
		if !reflect.DeepEqual(raw[port], want) {
			t.Errorf("record of port %d: %v, want %v", port, raw[port], want)
		}
	}

	s = open(t, path)
	defer s.Close()
	if got, want := list(t, s), []port.Spec{old, v1, v2, plain}; !reflect.DeepEqual(got, want) {
		t.Fatalf("List after reopening = %+v, want %+v", got, want)
	}
}
