// Package store keeps sw-listener's opened ports across restarts.
//
// Store is deliberately small: a single listener keeps it in a bbolt file
// (Bolt); a cluster of listeners would implement the same interface on etcd.
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
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/socket-warp/socket-warp/listener/port"
)

// Store keeps the opened ports. Every method is safe for concurrent use; Put
// and Delete are durable when they return.
type Store interface {
	// Put adds p, or replaces the port of the same number.
	Put(p port.Spec) error
	// Delete removes the port; removing one that is not there is no error.
	Delete(number int) error
	// List returns every port, sorted by number, without their Error.
	List() ([]port.Spec, error)
	// Close releases the store; nothing may use it afterwards.
	Close() error
}

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

// Bolt is the single-node Store: one bbolt file.
type Bolt struct {
	path string
	db   *bolt.DB
}

var _ Store = (*Bolt)(nil)

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
	if err := s.check(); err != nil {
		db.Close()
		return nil, err
	}
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
func (s *Bolt) check() error {
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
		return fmt.Errorf("state file %s: %w", s.path, err)
	}
	if _, err := s.List(); err != nil {
		return err
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		var errs []error
		for e := range tx.Check() {
			errs = append(errs, e)
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return fmt.Errorf("state file %s is corrupt: %w", s.path, err)
	}
	err = guard(func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucketIfNotExists(bucketPorts)
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("state file %s: %w", s.path, err)
	}
	return nil
}

// Path is the file's path as given to OpenBolt.
func (s *Bolt) Path() string { return s.path }

func key(port int) ([]byte, error) {
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("port %d is outside 1-65535", port)
	}
	return binary.BigEndian.AppendUint16(nil, uint16(port)), nil
}

// Put implements Store.
func (s *Bolt) Put(p port.Spec) error {
	k, err := key(p.Port)
	if err != nil {
		return fmt.Errorf("state file %s: %w", s.path, err)
	}
	version := 1
	if p.ProxyProtocol != "" {
		version = 2
	}
	v, err := json.Marshal(record{Version: version, UID: p.UID, Port: p.Port,
		ConnectAddress: p.ConnectAddress, ConnectPort: p.ConnectPort, ProxyProtocol: p.ProxyProtocol})
	if err != nil {
		return fmt.Errorf("state file %s: %w", s.path, err)
	}
	err = guard(func() error {
		return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketPorts).Put(k, v) })
	})
	if err != nil {
		return fmt.Errorf("state file %s: save port %d: %w", s.path, p.Port, err)
	}
	return nil
}

// Delete implements Store.
func (s *Bolt) Delete(number int) error {
	k, err := key(number)
	if err != nil {
		return fmt.Errorf("state file %s: %w", s.path, err)
	}
	err = guard(func() error {
		return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketPorts).Delete(k) })
	})
	if err != nil {
		return fmt.Errorf("state file %s: remove port %d: %w", s.path, number, err)
	}
	return nil
}

// List implements Store.
func (s *Bolt) List() ([]port.Spec, error) {
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
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("state file %s: close: %w", s.path, err)
	}
	return nil
}
