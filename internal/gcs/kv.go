package gcs

import (
	"context"
	"sort"
	"strconv"
	"strings"

	"github.com/rayo-dev/rayo/internal/autoscaler"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

type kvKey struct{ namespace, key string }

// storeKey names a namespaced key in the store, without ambiguity
// whatever bytes the namespace holds.
func storeKey(namespace, key string) string {
	return strconv.Itoa(len(namespace)) + ":" + namespace + "/" + key
}

// The key-value methods, as the Mux serves them (see Server.mux).

func (s *Server) serveKVPut(_ context.Context, e *pb.KVEntry) (*pb.KVReply, error) {
	return s.kvPut(kvKey{e.Namespace, e.Key}, e), nil
}

func (s *Server) serveKVGet(_ context.Context, e *pb.KVEntry) (*pb.KVReply, error) {
	s.mu.Lock()
	v, ok := s.kv[kvKey{e.Namespace, e.Key}]
	s.mu.Unlock()
	return &pb.KVReply{Value: v, Found: ok}, nil
}

func (s *Server) serveKVDel(_ context.Context, e *pb.KVEntry) (*pb.KVReply, error) {
	return s.kvDel(kvKey{e.Namespace, e.Key}), nil
}

// serveKVKeys lists the keys of a namespace that begin with e.Key.
func (s *Server) serveKVKeys(_ context.Context, e *pb.KVEntry) (*pb.KVReply, error) {
	return &pb.KVReply{Keys: s.kvKeys(e.Namespace, e.Key)}, nil
}

// kvPut sets a key; Found says whether it existed, and then the old value
// stays unless the entry says to overwrite it.
func (s *Server) kvPut(k kvKey, e *pb.KVEntry) *pb.KVReply {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	_, found := s.kv[k]
	s.mu.Unlock()
	if found && !e.Overwrite {
		return &pb.KVReply{Found: true}
	}
	if e.Value == nil {
		e.Value = []byte{} // stored, if empty
	}
	rec := &pb.KVEntry{Namespace: e.Namespace, Key: e.Key, Value: e.Value}
	if err := s.save(TableKV, storeKey(k.namespace, k.key), rec); err != nil {
		return &pb.KVReply{Found: found, Error: err.Error()}
	}
	s.mu.Lock()
	s.kv[k] = e.Value
	s.mu.Unlock()
	if k.namespace == autoscaler.Namespace && k.key == autoscaler.KeyLaunchable {
		s.publish() // the nodes hear at once what they may wait for
	}
	return &pb.KVReply{Found: found}
}

func (s *Server) kvDel(k kvKey) *pb.KVReply {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	_, found := s.kv[k]
	s.mu.Unlock()
	if !found {
		return &pb.KVReply{}
	}
	if err := s.erase(TableKV, storeKey(k.namespace, k.key)); err != nil {
		return &pb.KVReply{Found: true, Error: err.Error()}
	}
	s.mu.Lock()
	delete(s.kv, k)
	s.mu.Unlock()
	return &pb.KVReply{Found: true}
}

// kvKeys lists the keys of a namespace that start with prefix, sorted.
func (s *Server) kvKeys(namespace, prefix string) []string {
	s.mu.Lock()
	var keys []string
	for k := range s.kv {
		if k.namespace == namespace && strings.HasPrefix(k.key, prefix) {
			keys = append(keys, k.key)
		}
	}
	s.mu.Unlock()
	sort.Strings(keys)
	return keys
}
