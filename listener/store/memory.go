package store

import (
	"context"
	"sync"

	"github.com/socket-warp/socket-warp/listener/port"
)

// Memory is a Store in memory: what the reconciler's tests run on, and a
// listener that needs to keep nothing across restarts could.
type Memory struct {
	wmu    sync.Mutex // queues the writers, as Bolt's does
	mirror *mirror
}

var (
	_ Store = (*Memory)(nil)
	_ Store = (*Bolt)(nil)
)

// NewMemory returns a store holding ports, at revision 1.
func NewMemory(ports ...port.Spec) *Memory { return &Memory{mirror: newMirror(ports)} }

// Put implements Store.
func (s *Memory) Put(ctx context.Context, p port.Spec, prev int64) (int64, error) {
	p.Error = ""
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if _, err := key(p.Port); err != nil {
		return 0, err
	}
	if _, err := s.mirror.mayPut(p.Port, prev); err != nil {
		return 0, err
	}
	return s.mirror.apply(Event{Port: p.Port, Spec: p}), nil
}

// Delete implements Store.
func (s *Memory) Delete(ctx context.Context, number int, prev int64) (port.Spec, int64, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := ctx.Err(); err != nil {
		return port.Spec{}, 0, err
	}
	r, err := s.mirror.mayDelete(number, prev)
	if err != nil {
		return port.Spec{}, 0, err
	}
	return r.Spec, s.mirror.apply(Event{Port: number, Deleted: true}), nil
}

// List implements Store.
func (s *Memory) List(ctx context.Context) (Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return Snapshot{}, err
	}
	return s.mirror.snapshot(), nil
}

// Watch implements Store.
func (s *Memory) Watch(ctx context.Context, after int64) <-chan WatchResponse {
	return s.mirror.watch(ctx, after)
}

// Close implements Store.
func (s *Memory) Close() error {
	s.mirror.close()
	return nil
}
