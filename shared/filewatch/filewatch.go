// Package filewatch calls a function when files change: the one mechanism
// behind the certificate reload (shared/tlsutil) and the connector's
// renewal secret file.
package filewatch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// Defaults for Options.
const (
	DefaultPollInterval = 30 * time.Second
	DefaultDebounce     = 100 * time.Millisecond
)

// kubeDataDir is the symlink a Kubernetes secret or configmap volume swaps
// atomically on every update; the files themselves are symlinks through it
// and never change.
const kubeDataDir = "..data"

// Options tune Run.
type Options struct {
	// Poll is how often the files' size, modification time and identity
	// are compared, in case the file system sends no events (some network
	// and FUSE file systems); 0: DefaultPollInterval; negative: no polling.
	Poll time.Duration
	// Debounce is how long to wait after a file event for more to come, so
	// that files written one after the other (a certificate, then its key)
	// are read once. 0: DefaultDebounce.
	Debounce time.Duration
	// What names the files in the log lines, e.g. "certificate".
	What string
	// Log receives the warnings when the file system cannot be watched.
	// nil: none.
	Log *zap.Logger
}

// Run watches paths until ctx ends and calls changed after they change,
// from Run's goroutine, one call at a time. It calls changed once at its
// start too, for whatever changed before it watched. It returns once ctx
// has ended and every goroutine it started has too.
//
// It watches the directories that hold the files rather than the files,
// since editors, mv and certificate tools replace a file by renaming another
// over it, and Kubernetes swaps a "..data" symlink. Bursts of events are
// debounced. As a fallback it also polls the files' size, modification time
// and identity (following symlinks). Should the file system refuse to be
// watched, Run logs a warning and polls only.
//
// A call of changed may find nothing new (an event for a file of the same
// name, or a change already picked up by a SIGHUP): it has to compare.
func Run(ctx context.Context, paths []string, opts Options, changed func()) {
	if opts.Poll == 0 {
		opts.Poll = DefaultPollInterval
	}
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.What == "" {
		opts.What = "watched"
	}
	w := &watch{paths: paths, opts: opts, names: map[string]bool{kubeDataDir: true}, dirs: map[string]bool{}}
	for _, p := range paths {
		w.names[filepath.Base(p)] = true
		w.dirs[filepath.Dir(p)] = true
	}
	w.run(ctx, changed)
}

type watch struct {
	paths []string
	opts  Options
	names map[string]bool // base names of the files, and kubeDataDir
	dirs  map[string]bool
}

func (w *watch) run(ctx context.Context, changed func()) {
	var events <-chan fsnotify.Event
	var errs <-chan error
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		w.opts.Log.Warn("cannot watch "+w.opts.What+" files, polling only",
			zap.Duration("poll_interval", w.opts.Poll), zap.Error(err))
	} else {
		defer fw.Close() // waits for the watcher's goroutine to end
		events, errs = fw.Events, fw.Errors
		w.watchDirs(fw, true)
	}

	var tick <-chan time.Time
	if w.opts.Poll > 0 {
		t := time.NewTicker(w.opts.Poll)
		defer t.Stop()
		tick = t.C
	}
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()

	// Stat before each call: should a file change in between, the next
	// poll sees a difference and calls once more, which costs nothing.
	stats := w.stat()
	changed()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if w.names[filepath.Base(ev.Name)] {
				debounce.Reset(w.opts.Debounce)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			w.opts.Log.Warn(w.opts.What+" file watch", zap.Error(err))
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				debounce.Reset(w.opts.Debounce) // events were lost
			}
		case <-debounce.C:
			stats = w.stat()
			changed()
		case <-tick:
			if fw != nil {
				w.watchDirs(fw, false) // a directory may have been replaced
			}
			if now := w.stat(); !statsEqual(now, stats) {
				stats = now
				changed()
			}
		}
	}
}

// watchDirs adds the directories that are not watched yet. A failure is
// logged once (at start); polling still covers the files.
func (w *watch) watchDirs(fw *fsnotify.Watcher, first bool) {
	watched := map[string]bool{}
	for _, d := range fw.WatchList() {
		watched[d] = true
	}
	for d := range w.dirs {
		if watched[d] {
			continue
		}
		if err := fw.Add(d); err != nil && first {
			w.opts.Log.Warn("cannot watch "+w.opts.What+" directory, polling only",
				zap.String("dir", d), zap.Duration("poll_interval", w.opts.Poll), zap.Error(err))
		}
	}
}

// fileStat is what polling compares. os.Stat follows symlinks, so a swapped
// link shows as a different file.
type fileStat struct {
	err string
	fi  os.FileInfo
}

func (a fileStat) equal(b fileStat) bool {
	if a.fi == nil || b.fi == nil {
		return a.fi == nil && b.fi == nil && a.err == b.err
	}
	return os.SameFile(a.fi, b.fi) && a.fi.Size() == b.fi.Size() &&
		a.fi.ModTime().Equal(b.fi.ModTime()) && a.fi.Mode() == b.fi.Mode()
}

func statsEqual(a, b []fileStat) bool {
	for i := range a {
		if !a[i].equal(b[i]) {
			return false
		}
	}
	return true
}

func (w *watch) stat() []fileStat {
	out := make([]fileStat, len(w.paths))
	for i, p := range w.paths {
		fi, err := os.Stat(p)
		if err != nil {
			out[i] = fileStat{err: err.Error()}
			continue
		}
		out[i] = fileStat{fi: fi}
	}
	return out
}
