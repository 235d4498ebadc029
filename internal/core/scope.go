package core

import (
	"context"
	"sync"
)

// TaskScope collects what must end when a task's function returns: the
// zero-copy views of its arguments, which are valid only while it runs.
type TaskScope struct {
	mu    sync.Mutex
	ends  []func()
	ended bool
}

type scopeKey struct{}

// WithTaskScope returns a context carrying a new scope, for running one
// task; the caller ends the scope once the function has returned.
func WithTaskScope(ctx context.Context) (context.Context, *TaskScope) {
	s := &TaskScope{}
	return context.WithValue(ctx, scopeKey{}, s), s
}

// TaskScopeOf returns the scope ctx carries, or nil.
func TaskScopeOf(ctx context.Context) *TaskScope {
	s, _ := ctx.Value(scopeKey{}).(*TaskScope)
	return s
}

// OnEnd runs f when the scope ends, or at once if it has.
func (s *TaskScope) OnEnd(f func()) {
	s.mu.Lock()
	if !s.ended {
		s.ends = append(s.ends, f)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	f()
}

// End runs what OnEnd collected, once.
func (s *TaskScope) End() {
	s.mu.Lock()
	ends := s.ends
	s.ends, s.ended = nil, true
	s.mu.Unlock()
	for _, f := range ends {
		f()
	}
}
