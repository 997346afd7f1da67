// Package store keeps sw-listener's opened ports across restarts.
//
// Store is deliberately small: a single listener keeps it in a bbolt file
// (Bolt), a test may keep it in memory (Memory), and a cluster of listeners
// implements the same interface on etcd.
//
// # The bbolt file
//
// One bucket, "ports". Key: the opened port, 2 bytes big-endian (so that the
// keys sort by port). Value: a JSON record
//
//	{"version":1,"uid":"swc-1","port":8080,"connect_address":"db.internal","connect_port":5432}
//	{"version":2,"uid":"swc-1","port":8443,"connect_address":"web","connect_port":443,"proxy_protocol":"v2"}
//
// Version history of the record:
//
//	1  the four fields of POST /open
//	2  plus proxy_protocol ("v1" or "v2")
//
// A port without PROXY protocol is still written as version 1, so that a
// file holds version 2 records only where they matter: an older listener
// then refuses the file rather than serve those ports without the PROXY
// header their targets expect. Version 1 records read as PROXY protocol off.
//
// A record of a version this code does not know, or one that does not
// decode, makes the whole file unreadable: a listener that silently skipped
// it would start without a port that the operator believes open.
//
// Damage: bbolt refuses a file whose meta pages fail their checksum (a torn
// write, a truncated file, random bytes, another program's file), and would
// take an empty file for a new one: OpenBolt refuses that itself. OpenBolt
// then reads every record and runs bbolt's page check before it writes
// anything. bbolt does not defend against every damage inside its pages
// (a page pointing to itself makes it loop); such a file may still crash
// the process instead of failing with a message.
package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/socket-warp/socket-warp/listener/port"
)

// Store keeps the opened ports: the desired state, which every listener
// watches and makes its bindings match (package reconcile). Every change
// makes a new revision, higher than the ones before; a Watch from a
// revision delivers every change after it, in order, so that a watcher
// that lost its watch resumes where it was. Every method is safe for
// concurrent use; Put and Delete are durable when they return.
//
// The shape is etcd's (design.md §9): a cluster implements it on a key
// prefix, with the revision of etcd, compare-and-swap in a transaction and
// a watch that resumes from a revision.
type Store interface {
	// Put stores p if its port has no record, or if the record's revision
	// is prev (not 0): it replaces what the caller saw. Otherwise it fails
	// with port.ErrAlreadyOpen. It returns the revision of the change.
	Put(ctx context.Context, p port.Spec, prev int64) (int64, error)
	// Delete removes the port's record and returns it, with the revision
	// of the change; port.ErrNotOpen when there is none, ErrConflict when
	// prev is not 0 and the record's revision is not prev.
	Delete(ctx context.Context, number int, prev int64) (port.Spec, int64, error)
	// List returns every port, sorted by number, and the revision they
	// stand at: a Watch from it misses nothing.
	List(ctx context.Context) (Snapshot, error)
	// Watch delivers the changes after revision after, in order, until ctx
	// ends or the watch breaks: then the channel closes, after a response
	// with the error (ErrCompacted: the changes after after are no longer
	// kept; List again). Events of one revision come in one response.
	Watch(ctx context.Context, after int64) <-chan WatchResponse
	// Close releases the store; nothing may use it afterwards. Watches
	// end with ErrClosed.
	Close() error
}

// Record is a stored port and the revision of the change that wrote it.
type Record struct {
	port.Spec
	Revision int64
}

// Snapshot is every stored port at one revision.
type Snapshot struct {
	Ports    []Record // sorted by port
	Revision int64
}

// Event is one change: a port put (Spec) or deleted.
type Event struct {
	Revision int64
	Port     int
	Spec     port.Spec // the port as put; zero when Deleted
	Deleted  bool
}

// WatchResponse is what a watch delivers: events, or why it ended.
type WatchResponse struct {
	Events []Event
	Err    error
}

var (
	// ErrCompacted: a watch asked for changes older than the store keeps.
	ErrCompacted = errors.New("store: revision compacted, list again")
	// ErrConflict: a Delete found the port changed since the caller saw it.
	ErrConflict = errors.New("store: the port changed meanwhile")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
)

// RecordVersion is the newest version of the records this code writes and
// reads; it reads every version from 1 on.
const RecordVersion = 2

// ErrLocked is returned (wrapped) by OpenBolt when another process holds the
// file.
var ErrLocked = errors.New("locked by another process")

var bucketPorts = []byte("ports")

type record struct {
	Version        int    `json:"version"`
	UID            string `json:"uid"`
	Port           int    `json:"port"`
	ConnectAddress string `json:"connect_address"`
	ConnectPort    int    `json:"connect_port"`
	ProxyProtocol  string `json:"proxy_protocol,omitempty"` // version 2
}

// Bolt is the single-node Store: one bbolt file, and a mirror of it in
// memory that answers List and feeds Watch (in-process: the only watcher
// is this listener).
//
// Its revisions count the changes since the file was opened: every record
// read at open is at revision 1. A cluster's store keeps them for good;
// here the watchers live no longer than the process.
type Bolt struct {
	path string
	db   *bolt.DB
	// wmu queues the writers, each across its write to disk: the compare
	// of the next (prev) must see the outcome of the one before. bbolt's
	// own writer lock queues them at the same place anyway. No reader
	// takes it: List and Watch read the mirror.
	wmu    sync.Mutex
	mirror *mirror
}

// OpenBolt opens, or creates, the bbolt file at path; missing directories
// are created 0700, a new file 0600. bbolt locks the file: when another
// process (another listener) holds it, OpenBolt gives up after lockTimeout
// with ErrLocked. The whole file is checked and every record decoded before
// OpenBolt returns, so that a corrupt file stops the caller now instead of
// in the middle of a request. Every error names the file.
func OpenBolt(path string, lockTimeout time.Duration) (*Bolt, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("state file %s: create its directory: %w", path, err)
	}
	// bbolt takes an empty file for a new one and writes a new database
	// over it. A file that exists but is empty was not made by OpenBolt,
	// which creates and initialises a file before it returns: it is a
	// truncated state file or the wrong path, and starting with no ports
	// over it would lose every port the operator believes open.
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Size() == 0 {
		return nil, fmt.Errorf("state file %s is empty (0 bytes), not a state file: restore it from a backup, or remove it to start with no ports",
			path)
	}
	db, err := openBolt(path, lockTimeout)
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("state file %s is %w (another sw-listener with the same state file?): gave up after %s",
			path, ErrLocked, lockTimeout)
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrVersionMismatch),
		errors.Is(err, bolterrors.ErrChecksum), errors.Is(err, errDamaged):
		return nil, fmt.Errorf("state file %s is corrupt or not a bbolt file: %w", path, err)
	case err != nil:
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	s := &Bolt{path: path, db: db}
	ports, err := s.check()
	if err != nil {
		db.Close()
		return nil, err
	}
	s.mirror = newMirror(ports)
	return s, nil
}

func openBolt(path string, lockTimeout time.Duration) (db *bolt.DB, err error) {
	err = guard(func() (err error) {
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
		return err
	})
	return db, err
}

// errDamaged is what guard makes of a panic or memory fault in bbolt.
var errDamaged = errors.New("corrupt")

// guard runs f and turns a panic of bbolt, or a fault reading its memory
// map (a damaged page pointing nowhere), into an error: a damaged file must
// stop the listener with a message, not a crash.
func guard(f func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", errDamaged, r)
		}
	}()
	return f()
}

// check reads every record and has bbolt check every page before this code
// writes anything to the file. The records come first:
// reading them here, under guard, meets most damage before bbolt's checker,
// which runs on a goroutine of its own where a memory fault cannot be
// caught. Only then is the bucket of a new file created.
func (s *Bolt) check() ([]port.Spec, error) {
	err := guard(func() error {
		return s.db.View(func(tx *bolt.Tx) error {
			return tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
				if !bytes.Equal(name, bucketPorts) {
					return fmt.Errorf("holds a bucket %q: it belongs to another program", name)
				}
				return nil
			})
		})
	})
	if err != nil {
		return nil, fmt.Errorf("state file %s: %w", s.path, err)
	}
	ports, err := s.read()
	if err != nil {
		return nil, err
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		var errs []error
		for e := range tx.Check() {
			errs = append(errs, e)
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return nil, fmt.Errorf("state file %s is corrupt: %w", s.path, err)
	}
	err = guard(func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucketIfNotExists(bucketPorts)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("state file %s: %w", s.path, err)
	}
	return ports, nil
}

// Path is the file's path as given to OpenBolt.
func (s *Bolt) Path() string { return s.path }

func key(port int) ([]byte, error) {
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("port %d is outside 1-65535", port)
	}
	return binary.BigEndian.AppendUint16(nil, uint16(port)), nil
}

func encode(p port.Spec) ([]byte, error) {
	version := 1
	if p.ProxyProtocol != "" {
		version = 2
	}
	return json.Marshal(record{Version: version, UID: p.UID, Port: p.Port,
		ConnectAddress: p.ConnectAddress, ConnectPort: p.ConnectPort, ProxyProtocol: p.ProxyProtocol})
}

// Put implements Store.
func (s *Bolt) Put(ctx context.Context, p port.Spec, prev int64) (int64, error) {
	p.Error = ""
	k, err := key(p.Port)
	if err != nil {
		return 0, fmt.Errorf("state file %s: %w", s.path, err)
	}
	v, err := encode(p)
	if err != nil {
		return 0, fmt.Errorf("state file %s: %w", s.path, err)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if _, err := s.mirror.mayPut(p.Port, prev); err != nil {
		return 0, err
	}
	err = guard(func() error {
		return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketPorts).Put(k, v) })
	})
	if err != nil {
		return 0, fmt.Errorf("state file %s: save port %d: %w", s.path, p.Port, err)
	}
	return s.mirror.apply(Event{Port: p.Port, Spec: p}), nil
}

// Delete implements Store.
func (s *Bolt) Delete(ctx context.Context, number int, prev int64) (port.Spec, int64, error) {
	k, err := key(number)
	if err != nil {
		return port.Spec{}, 0, fmt.Errorf("state file %s: %w", s.path, err)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := ctx.Err(); err != nil {
		return port.Spec{}, 0, err
	}
	r, err := s.mirror.mayDelete(number, prev)
	if err != nil {
		return port.Spec{}, 0, err
	}
	err = guard(func() error {
		return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketPorts).Delete(k) })
	})
	if err != nil {
		return port.Spec{}, 0, fmt.Errorf("state file %s: remove port %d: %w", s.path, number, err)
	}
	return r.Spec, s.mirror.apply(Event{Port: number, Deleted: true}), nil
}

// List implements Store.
func (s *Bolt) List(ctx context.Context) (Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return Snapshot{}, err
	}
	return s.mirror.snapshot(), nil
}

// Watch implements Store.
func (s *Bolt) Watch(ctx context.Context, after int64) <-chan WatchResponse {
	return s.mirror.watch(ctx, after)
}

// read reads every record from the file.
func (s *Bolt) read() ([]port.Spec, error) {
	var out []port.Spec
	err := guard(func() error {
		return s.db.View(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketPorts)
			if b == nil { // a new file, before check created it
				return nil
			}
			return b.ForEach(func(k, v []byte) error {
				p, err := decode(k, v)
				if err != nil {
					return err
				}
				// Keys come sorted and unique: anything else is a
				// damaged tree (maybe a loop, which would never end).
				if n := len(out); n > 0 && p.Port <= out[n-1].Port {
					return fmt.Errorf("%w: port %d listed after port %d", errDamaged, p.Port, out[n-1].Port)
				}
				out = append(out, p)
				return nil
			})
		})
	})
	if err != nil {
		return nil, fmt.Errorf("state file %s: %w", s.path, err)
	}
	return out, nil
}

func decode(k, v []byte) (port.Spec, error) {
	if len(k) != 2 {
		return port.Spec{}, fmt.Errorf("key %x is not a port number", k)
	}
	number := int(binary.BigEndian.Uint16(k))
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return port.Spec{}, fmt.Errorf("port %d: record does not decode: %w", number, err)
	}
	if r.Version < 1 || r.Version > RecordVersion {
		return port.Spec{}, fmt.Errorf("port %d: record version %d, this sw-listener reads versions 1 to %d",
			number, r.Version, RecordVersion)
	}
	if r.Port != number {
		return port.Spec{}, fmt.Errorf("port %d: record names port %d", number, r.Port)
	}
	switch r.ProxyProtocol {
	case "", port.ProxyV1, port.ProxyV2:
	default:
		return port.Spec{}, fmt.Errorf("port %d: record has proxy_protocol %q, not \"v1\" or \"v2\"", number, r.ProxyProtocol)
	}
	return port.Spec{UID: r.UID, Port: r.Port, ConnectAddress: r.ConnectAddress, ConnectPort: r.ConnectPort,
		ProxyProtocol: r.ProxyProtocol}, nil
}

// Close implements Store.
func (s *Bolt) Close() error {
	s.mirror.close()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("state file %s: close: %w", s.path, err)
	}
	return nil
}
