package gcs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// DefaultRedisPrefix starts the name of every Redis key the control store
// uses, unless Config.RedisPrefix says otherwise.
const DefaultRedisPrefix = "rayo:"

// redisConnectTimeout bounds the first contact with Redis, so that a
// control store pointed at a dead address fails at once.
const redisConnectTimeout = 5 * time.Second

// RedisStore is a Store in Redis: each table is one Redis hash, named by
// the prefix and the table ("rayo:nodes"), whose fields are the keys.
//
// It is a GuardedStore: Mark writes a marker key (the prefix and
// "marker") holding a token of this client's, and Intact checks that it
// is still there. A Redis server restarted empty has lost the marker with
// everything else; a write that failed (Redis down) makes the store not
// intact either, until the next Mark.
type RedisStore struct {
	c      *redis.Client
	prefix string
	token  string      // this client's marker value
	failed atomic.Bool // a write failed since the last Intact
}

// DialRedis connects to the Redis server at addr (HOST:PORT) and checks
// that it answers. Every key it uses starts with prefix.
func DialRedis(ctx context.Context, addr, password, prefix string) (*RedisStore, error) {
	c := redis.NewClient(&redis.Options{
		Addr:            addr,
		Password:        password,
		Protocol:        2,
		DisableIdentity: true,
		DialTimeout:     2 * time.Second,
		ReadTimeout:     30 * time.Second, // a table of executables is large
		WriteTimeout:    30 * time.Second,
		MaxRetries:      1,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	})
	ctx, cancel := context.WithTimeout(ctx, redisConnectTimeout)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("gcs: redis at %s does not answer: %w", addr, err)
	}
	var rnd [16]byte
	_, _ = rand.Read(rnd[:])
	return &RedisStore{c: c, prefix: prefix, token: hex.EncodeToString(rnd[:])}, nil
}

// markerKey is the Redis key of the marker that tells a Redis server that
// lost its data (see Intact).
func (r *RedisStore) markerKey() string { return r.prefix + "marker" }

// Mark writes the marker: Redis holds the whole state now.
func (r *RedisStore) Mark(ctx context.Context) error {
	if err := r.c.Set(ctx, r.markerKey(), r.token, 0).Err(); err != nil {
		r.failed.Store(true)
		return fmt.Errorf("gcs: redis SET %s: %w", r.markerKey(), err)
	}
	return nil
}

// Intact reports whether Redis still holds the marker of the last Mark and
// no write failed since the last call.
func (r *RedisStore) Intact(ctx context.Context) (bool, error) {
	failed := r.failed.Swap(false)
	v, err := r.c.Get(ctx, r.markerKey()).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return false, nil
	case err != nil:
		r.failed.Store(true) // still unknown at the next call
		return false, fmt.Errorf("gcs: redis GET %s: %w", r.markerKey(), err)
	}
	return v == r.token && !failed, nil
}

func (r *RedisStore) key(table string) string { return r.prefix + table }

// Put sets key in table to value.
func (r *RedisStore) Put(ctx context.Context, table, key string, value []byte) error {
	if err := r.c.HSet(ctx, r.key(table), key, value).Err(); err != nil {
		r.failed.Store(true)
		return fmt.Errorf("gcs: redis HSET %s: %w", r.key(table), err)
	}
	return nil
}

// Get reads key in table.
func (r *RedisStore) Get(ctx context.Context, table, key string) ([]byte, bool, error) {
	v, err := r.c.HGet(ctx, r.key(table), key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("gcs: redis HGET %s: %w", r.key(table), err)
	}
	return v, true, nil
}

// Delete removes key from table.
func (r *RedisStore) Delete(ctx context.Context, table, key string) error {
	if err := r.c.HDel(ctx, r.key(table), key).Err(); err != nil {
		r.failed.Store(true)
		return fmt.Errorf("gcs: redis HDEL %s: %w", r.key(table), err)
	}
	return nil
}

// List reads a whole table.
func (r *RedisStore) List(ctx context.Context, table string) (map[string][]byte, error) {
	all, err := r.c.HGetAll(ctx, r.key(table)).Result()
	if err != nil {
		return nil, fmt.Errorf("gcs: redis HGETALL %s: %w", r.key(table), err)
	}
	out := make(map[string][]byte, len(all))
	for k, v := range all {
		out[k] = []byte(v)
	}
	return out, nil
}

// Close closes the connections to Redis.
func (r *RedisStore) Close() error {
	if err := r.c.Close(); err != nil {
		return fmt.Errorf("gcs: close redis client: %w", err)
	}
	return nil
}
