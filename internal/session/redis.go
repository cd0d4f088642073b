package session

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/internal/seal"
)

// RedisStore keeps sessions in Redis, shared by every replica: the cookie
// carries only the sealed session ID; tokens and claims stay in Redis,
// sealed as well (a Redis dump or a read-only operator sees no token), with
// a TTL equal to the session's remaining absolute lifetime.
//
// It is a gorilla/sessions store of its own on go-redis rather than
// boj/redistore (built on the older redigo client, gob-encoded values, no
// secondary indexes) or rbcervilla/redisstore (not fetchable here): what
// Gatehouse needs beyond load/save — sid/sub indexes for back-channel
// logout, a per-session lock for refresh, update-only-if-present saves —
// takes a few Lua scripts either way.
//
// The keys, and why each command touches only one of them (Redis Cluster),
// are described at key. The client may be a standalone, Sentinel
// (failover) or Cluster client.
type RedisStore struct {
	*gorillaStore
	b *redisBackend
}

// NewRedisStore returns a store on client; every key starts with prefix.
func NewRedisStore(client redis.UniversalClient, sealer *seal.Sealer, opts CookieOptions, now func() time.Time, prefix string, options ...RedisStoreOption) *RedisStore {
	b := &redisBackend{
		client: client,
		cookie: idCookie{sealer: sealer, now: now},
		sealer: sealer,
		now:    now,
		prefix: prefix,
		save:   redis.NewScript(saveScript),
		del:    redis.NewScript(deleteScript),
		index:  redis.NewScript(indexScript),
		mark:   redis.NewScript(markScript),
		unlock: redis.NewScript(unlockScript),
	}
	for _, o := range options {
		o(b)
	}
	return &RedisStore{gorillaStore: newGorillaStore(b, opts, now), b: b}
}

// NewRedisClient builds a client for rawURL (redis:// or rediss:// for
// TLS). password, when not empty, replaces the URL's (so that it can come
// from a Kubernetes Secret on its own). The client connects lazily and
// reconnects by itself: a Redis outage needs no restart.
func NewRedisClient(rawURL, password string) (*redis.Client, error) {
	c, err := NewRedisUniversalClient(RedisOptions{URL: rawURL, Password: password})
	if err != nil {
		return nil, err
	}
	return c.(*redis.Client), nil
}

// RedisLogger routes the go-redis client's own messages (dial failures
// during an outage) to log instead of the standard logger's stderr. Install
// it with redis.SetLogger, once, at program start.
func RedisLogger(log *slog.Logger) interface {
	Printf(ctx context.Context, format string, v ...any)
} {
	return redisLogger{log}
}

type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client", "detail", strings.TrimSpace(fmt.Sprintf(format, v...)))
}

// Ping checks that Redis answers (readiness).
func (s *RedisStore) Ping(ctx context.Context) error {
	if err := s.b.client.Ping(ctx).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// Close closes the client.
func (s *RedisStore) Close() error { return s.b.client.Close() }

// DeleteByProviderSID ends every session of the provider session sid, on
// every replica.
func (s *RedisStore) DeleteByProviderSID(ctx context.Context, sid string) (int, error) {
	return s.b.deleteIndexed(ctx, kindSID, sid)
}

// endedTTL is how long a back-channel logout is remembered against
// sign-ins still in flight: far longer than a callback takes.
const endedTTL = 10 * time.Minute

// DeleteBySubject ends every session of the user sub, on every replica.
func (s *RedisStore) DeleteBySubject(ctx context.Context, sub string) (int, error) {
	return s.b.deleteIndexed(ctx, kindSub, sub)
}

// TryLock takes the session's lock for at most ttl.
func (s *RedisStore) TryLock(ctx context.Context, id string, ttl time.Duration) (func(), bool, error) {
	token := randomToken()
	key := s.b.key(kindLock, id)
	ok, err := s.b.client.SetNX(ctx, key, token, ttl).Result()
	if err != nil {
		return nil, false, unavailable(err)
	}
	if !ok {
		return nil, false, nil
	}
	return func() {
		// Detached: the lock must go even when the request was cancelled;
		// if Redis is gone, the TTL frees it.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = s.b.unlock.Run(ctx, s.b.client, []string{key}, token).Err()
	}, true, nil
}

// Get reads the session record.
func (s *RedisStore) Get(ctx context.Context, id string) (*Session, error) {
	sess, err := s.b.load(ctx, id)
	if err != nil {
		return nil, err
	}
	if sess == nil {
		return nil, ErrNoSession
	}
	return sess, nil
}

// Put rewrites the record of a session that still exists.
func (s *RedisStore) Put(ctx context.Context, sess *Session) error {
	payload, err := json.Marshal(sess)
	if err != nil {
		return fmt.Errorf("encode session: %w", err)
	}
	ttl := int(sess.Remaining(s.b.now()) / time.Second)
	if ttl < 1 {
		return ErrNoSession
	}
	if err := s.b.store(ctx, sess, payload, ttl, false); err != nil {
		return err
	}
	sess.loaded = sess.TokenStamp()
	return nil
}

// MarkOnce remembers key until until and reports whether it was new.
func (s *RedisStore) MarkOnce(ctx context.Context, key string, until time.Time) (bool, error) {
	ttl := until.Sub(s.b.now())
	if ttl < time.Second {
		ttl = time.Second
	}
	k := s.b.key(kindOnce, key)
	// Durable: a marker lost in a failover would let the token be replayed.
	cmds, err := s.b.run(ctx, true, op{key: k, plain: func(ctx context.Context, p redis.Pipeliner) redis.Cmder {
		return p.SetNX(ctx, k, "1", ttl)
	}})
	if err != nil {
		return false, unavailable(err)
	}
	return cmds[0].(*redis.BoolCmd).Val(), nil
}

// Unmark forgets key.
func (s *RedisStore) Unmark(ctx context.Context, key string) error {
	if err := s.b.client.Del(ctx, s.b.key(kindOnce, key)).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// redisBackend is the gorilla/sessions store underneath: its cookie
// carries the sealed ID, the record lives in Redis.
type redisBackend struct {
	client                         redis.UniversalClient
	cookie                         idCookie
	sealer                         *seal.Sealer
	now                            func() time.Time
	prefix                         string
	save, del, index, mark, unlock *redis.Script
	ack                            int           // WithReplicaAck: replicas that must confirm a durable write
	ackTimeout                     time.Duration // and how long WAIT may take
}

func (b *redisBackend) Get(r *http.Request, name string) (*sessions.Session, error) {
	return b.New(r, name)
}

func (b *redisBackend) New(r *http.Request, name string) (*sessions.Session, error) {
	return newSession(b, r, name)
}

func (b *redisBackend) loadSession(r *http.Request, name string) (*Session, error) {
	id, rotated, ok := b.cookie.id(r, name)
	if !ok {
		return nil, nil
	}
	s, err := b.load(r.Context(), id)
	if err != nil || s == nil {
		return nil, err
	}
	s.Reseal = s.Reseal || rotated
	return s, nil
}

// load returns the record's session, nil if there is none (or it is past
// its end by our clock, or does not open), or ErrUnavailable.
func (b *redisBackend) load(ctx context.Context, id string) (*Session, error) {
	vals, err := b.client.HMGet(ctx, b.key(kindRecord, id), "d", "exp").Result()
	if err != nil {
		return nil, unavailable(err)
	}
	sealed, _ := vals[0].(string)
	exp, _ := vals[1].(string)
	if sealed == "" {
		return nil, nil
	}
	if end, err := strconv.ParseInt(exp, 10, 64); err != nil || b.now().Unix() >= end {
		return nil, nil
	}
	plain, _, rotated, err := b.sealer.OpenBytes(recordName(id), []byte(sealed), 0, b.now())
	if err != nil {
		return nil, nil
	}
	payload, err := inflate(plain)
	if err != nil {
		return nil, nil
	}
	s := new(Session)
	if err := json.Unmarshal(payload, s); err != nil || s.ID != id {
		return nil, nil
	}
	s.Reseal, s.stored, s.loaded = rotated, true, s.TokenStamp()
	return s, nil
}

func (b *redisBackend) Save(r *http.Request, w http.ResponseWriter, gsess *sessions.Session) error {
	if id, ok := b.cookie.deleting(r, gsess); ok {
		if id != "" {
			if _, err := b.deleteRecords(r.Context(), id); err != nil {
				return err
			}
		}
		b.cookie.set(w, gsess)
		return nil
	}
	s, payload, err := encodedSession(gsess)
	if err != nil {
		return err
	}
	if err := b.store(r.Context(), s, payload, gsess.Options.MaxAge, gsess.IsNew); err != nil {
		return err
	}
	b.cookie.set(w, gsess)
	return nil
}

// store writes s's record (payload is s encoded) and its index entries. An
// update (isNew false) of a record that is gone fails with ErrNoSession;
// one whose tokens were refreshed since the writer read them is skipped
// (the record keeps the newer tokens).
func (b *redisBackend) store(ctx context.Context, s *Session, payload []byte, ttl int, isNew bool) error {
	if len(payload) > maxInflated {
		// load would refuse to inflate it: every request would find no session.
		return fmt.Errorf("%w: %d bytes of session, Redis sessions are read back up to %d", ErrTooLarge, len(payload), maxInflated)
	}
	now := b.now()
	started := s.SignInStarted
	if started.IsZero() {
		started = now
	}
	sealed := b.sealer.SealBytes(recordName(s.ID), deflate(payload), now)
	mode := "update"
	if isNew {
		mode = "new"
	}
	end := now.Unix() + int64(ttl)
	stamp := s.TokenStamp()
	save := scriptOp(b.save, b.key(kindRecord, s.ID), sealed, ttl, mode, s.ProviderSID, s.Subject, end, s.loaded, stamp)
	ops := []op{save}
	if isNew {
		ops = append(b.indexOps(s.ID, s.ProviderSID, s.Subject, ttl), save)
	}
	// Durable: what a failover must not lose (a new session, new tokens
	// whose predecessors the provider has revoked); a touch may be lost.
	cmds, err := b.run(ctx, isNew || stamp != s.loaded, ops...)
	if err != nil {
		return unavailable(err)
	}
	res, _ := cmds[len(cmds)-1].(*redis.Cmd).Slice()
	code, _ := res[0].(int64)
	switch code {
	case 0:
		return ErrNoSession
	case 3: // the record's provider session or user changed: move its index entries
		oldSID, _ := res[1].(string)
		oldSub, _ := res[2].(string)
		var moves []op
		if oldSID != s.ProviderSID {
			moves = append(moves, b.indexOps(s.ID, s.ProviderSID, "", ttl)...)
			if oldSID != "" {
				moves = append(moves, sremOp(b.key(kindSID, oldSID), s.ID))
			}
		}
		if oldSub != s.Subject {
			moves = append(moves, b.indexOps(s.ID, "", s.Subject, ttl)...)
			if oldSub != "" {
				moves = append(moves, sremOp(b.key(kindSub, oldSub), s.ID))
			}
		}
		if _, err := b.run(ctx, true, moves...); err != nil {
			return unavailable(err)
		}
	}
	if isNew {
		// After the record and its index entries are written (see
		// deleteIndexed for the other half of this order).
		ended, err := b.loggedOut(ctx, s.ProviderSID, s.Subject, started)
		if err != nil {
			return unavailable(err)
		}
		if ended {
			if _, err := b.deleteRecords(ctx, s.ID); err != nil {
				return err
			}
			return ErrLoggedOut
		}
	}
	return nil
}

// loggedOut reports whether a back-channel logout ended the provider
// session sid, or the user sub after started (while a sign-in was in
// flight).
func (b *redisBackend) loggedOut(ctx context.Context, sid, sub string, started time.Time) (bool, error) {
	var keys []string
	if sid != "" {
		keys = append(keys, b.key(kindEnded+kindSID, sid))
	}
	keys = append(keys, b.key(kindEnded+kindSub, sub))
	cmds, err := b.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Get(ctx, k)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, err
	}
	for i, c := range cmds {
		v, err := c.(*redis.StringCmd).Int64()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return false, err
		case sid != "" && i == 0:
			return true, nil // the provider session ended: any sign-in of it
		case v >= started.UnixMilli():
			return true, nil // the user was logged out after this sign-in began
		}
	}
	return false, nil
}

func (b *redisBackend) deleteIndexed(ctx context.Context, kind, value string) (int, error) {
	if value == "" {
		return 0, nil
	}
	// The logout is remembered first (ended:), then the index's sessions
	// end: a sign-in of that provider session, or of that user from before
	// now, still in flight, either finds the mark when it checks after
	// writing its record (store), or wrote its index entry before the
	// members are read here. Single-key commands in that order, so it
	// holds on a cluster too.
	if _, err := b.run(ctx, true, scriptOp(b.mark, b.key(kindEnded+kind, value), b.now().UnixMilli(), int(endedTTL/time.Second))); err != nil {
		return 0, unavailable(err)
	}
	ids, err := b.client.SMembers(ctx, b.key(kind, value)).Result()
	if err != nil {
		return 0, unavailable(err)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	return b.deleteRecords(ctx, ids...)
}

// recordName binds a sealed record to its session ID: a record copied
// under another key does not open.
func recordName(id string) string { return "record:" + id }

func unavailable(err error) error {
	if errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

func randomToken() string {
	var b [18]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("session: crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}
