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

	"github.com/gorilla/securecookie"
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
// Keys (prefix P): P+"s:"+id is a hash {d: sealed payload, exp, sid, sub};
// P+"sid:"+sid and P+"sub:"+sub are sets of session IDs whose TTL is at
// least their longest member's; P+"lock:"+id is the refresh lock;
// P+"once:"+key the replay markers. Redis Cluster is not supported (the
// scripts touch a record and its index sets together).
type RedisStore struct {
	*gorillaStore
	b *redisBackend
}

// NewRedisStore returns a store on client; every key starts with prefix.
func NewRedisStore(client redis.UniversalClient, sealer *seal.Sealer, opts CookieOptions, now func() time.Time, prefix string) *RedisStore {
	b := &redisBackend{
		client: client,
		codec:  codec{sealer: sealer, now: now},
		sealer: sealer,
		now:    now,
		prefix: prefix,
		save:   redis.NewScript(saveScript),
		del:    redis.NewScript(deleteScript),
		revoke: redis.NewScript(revokeScript),
		unlock: redis.NewScript(unlockScript),
	}
	return &RedisStore{
		gorillaStore: &gorillaStore{gs: b, name: CookieName(opts.Secure), secure: opts.Secure, now: now},
		b:            b,
	}
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
	return s.b.deleteIndexed(ctx, "sid:", sid)
}

// DeleteBySubject ends every session of the user sub, on every replica.
func (s *RedisStore) DeleteBySubject(ctx context.Context, sub string) (int, error) {
	return s.b.deleteIndexed(ctx, "sub:", sub)
}

// TryLock takes the session's lock for at most ttl.
func (s *RedisStore) TryLock(ctx context.Context, id string, ttl time.Duration) (func(), bool, error) {
	token := randomToken()
	key := s.b.prefix + "lock:" + id
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
	payload, rotated, err := s.b.load(ctx, id)
	if err != nil {
		return nil, err
	}
	if payload == nil {
		return nil, ErrNoSession
	}
	out := new(Session)
	if err := decodeSession(payload, out); err != nil || out.ID != id {
		return nil, ErrNoSession
	}
	out.Reseal, out.stored, out.loaded = rotated, true, out.TokenStamp()
	return out, nil
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
	stamp := sess.TokenStamp()
	if err := s.b.store(ctx, sess.ID, payload, record{sid: sess.ProviderSID, sub: sess.Subject, tokens: stamp, loaded: sess.loaded}, ttl, false); err != nil {
		return err
	}
	sess.loaded = stamp
	return nil
}

// MarkOnce remembers key until until and reports whether it was new.
func (s *RedisStore) MarkOnce(ctx context.Context, key string, until time.Time) (bool, error) {
	ttl := until.Sub(s.b.now())
	if ttl < time.Second {
		ttl = time.Second
	}
	ok, err := s.b.client.SetNX(ctx, s.b.prefix+"once:"+key, "1", ttl).Result()
	if err != nil {
		return false, unavailable(err)
	}
	return ok, nil
}

// Unmark forgets key.
func (s *RedisStore) Unmark(ctx context.Context, key string) error {
	if err := s.b.client.Del(ctx, s.b.prefix+"once:"+key).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// redisBackend is the gorilla/sessions Store underneath: its cookie
// carries the sealed ID, the payload lives in Redis.
type redisBackend struct {
	client                    redis.UniversalClient
	codec                     codec
	sealer                    *seal.Sealer
	now                       func() time.Time
	prefix                    string
	save, del, revoke, unlock *redis.Script
}

func (b *redisBackend) Get(r *http.Request, name string) (*sessions.Session, error) {
	return b.New(r, name)
}

func (b *redisBackend) New(r *http.Request, name string) (*sessions.Session, error) {
	gsess := sessions.NewSession(b, name)
	id, ok, err := readSealedID(r, name, b.codec)
	if !ok {
		return gsess, err
	}
	payload, rotated, err := b.load(r.Context(), id.ID)
	if err != nil {
		return gsess, err
	}
	if payload == nil {
		return gsess, nil
	}
	gsess.ID = id.ID
	gsess.IsNew = false
	gsess.Values[valPayload] = payload
	if id.Rotated || rotated {
		gsess.Values[valReseal] = true
	}
	return gsess, nil
}

// load returns the record's payload, nil if there is none (or it is past
// its end by our clock, or does not open), or ErrUnavailable.
func (b *redisBackend) load(ctx context.Context, id string) ([]byte, bool, error) {
	vals, err := b.client.HMGet(ctx, b.prefix+"s:"+id, "d", "exp").Result()
	if err != nil {
		return nil, false, unavailable(err)
	}
	sealed, _ := vals[0].(string)
	exp, _ := vals[1].(string)
	if sealed == "" {
		return nil, false, nil
	}
	if end, err := strconv.ParseInt(exp, 10, 64); err != nil || b.now().Unix() >= end {
		return nil, false, nil
	}
	plain, _, rotated, err := b.sealer.OpenBytes(recordName(id), []byte(sealed), 0, b.now())
	if err != nil {
		return nil, false, nil
	}
	payload, err := inflate(plain)
	if err != nil {
		return nil, false, nil
	}
	return payload, rotated, nil
}

func (b *redisBackend) Save(r *http.Request, w http.ResponseWriter, gsess *sessions.Session) error {
	if gsess.Options.MaxAge < 0 {
		if gsess.ID != "" {
			if err := b.del.Run(r.Context(), b.client, []string{b.prefix + "s:" + gsess.ID}, gsess.ID, b.prefix).Err(); err != nil {
				return unavailable(err)
			}
		}
		http.SetCookie(w, sessions.NewCookie(gsess.Name(), "", gsess.Options))
		return nil
	}
	if gsess.ID == "" {
		return errors.New("redis store: session without ID")
	}
	encoded, err := securecookie.EncodeMulti(gsess.Name(), SealedID{ID: gsess.ID}, b.codec)
	if err != nil {
		return err
	}
	payload, _ := gsess.Values[valPayload].([]byte)
	var rec record
	rec.sid, _ = gsess.Values[valSID].(string)
	rec.sub, _ = gsess.Values[valSubject].(string)
	rec.tokens, _ = gsess.Values[valTokens].(string)
	rec.loaded, _ = gsess.Values[valLoaded].(string)
	if err := b.store(r.Context(), gsess.ID, payload, rec, gsess.Options.MaxAge, gsess.IsNew); err != nil {
		return err
	}
	http.SetCookie(w, sessions.NewCookie(gsess.Name(), encoded, gsess.Options))
	return nil
}

// record is what the save script keeps next to the sealed payload.
type record struct {
	sid, sub string
	tokens   string // TokenStamp being written
	loaded   string // TokenStamp the writer read
}

// store writes the record and its index entries. An update (isNew false)
// of a record that is gone fails with ErrNoSession; one whose tokens were
// refreshed since the writer read them is skipped (the record keeps the
// newer tokens).
func (b *redisBackend) store(ctx context.Context, id string, payload []byte, rec record, ttl int, isNew bool) error {
	now := b.now()
	sealed := b.sealer.SealBytes(recordName(id), deflate(payload), now)
	mode := "update"
	if isNew {
		mode = "new"
	}
	end := now.Unix() + int64(ttl)
	n, err := b.save.Run(ctx, b.client, []string{b.prefix + "s:" + id},
		sealed, ttl, mode, id, rec.sid, rec.sub, end, b.prefix, rec.loaded, rec.tokens).Int()
	if err != nil {
		return unavailable(err)
	}
	if n == 0 {
		return ErrNoSession
	}
	return nil
}

func (b *redisBackend) deleteIndexed(ctx context.Context, kind, value string) (int, error) {
	if value == "" {
		return 0, nil
	}
	n, err := b.revoke.Run(ctx, b.client, []string{b.prefix + kind + value}, b.prefix).Int()
	if err != nil {
		return 0, unavailable(err)
	}
	return n, nil
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

// saveScript writes a record and indexes it.
// KEYS[1] record; ARGV: payload, ttl (s), "new"|"update", id, sid, sub,
// end (unix s), prefix, loaded token stamp, token stamp. Returns 0 when an
// update finds no record, 2 when it finds newer tokens (nothing written).
const saveScript = `
local rec = KEYS[1]
local ttl = tonumber(ARGV[2])
if ARGV[3] ~= "new" then
  if redis.call("EXISTS", rec) == 0 then return 0 end
  local cur = redis.call("HGET", rec, "t")
  if cur and cur ~= ARGV[9] and cur ~= ARGV[10] then return 2 end
end
local old = redis.call("HMGET", rec, "sid", "sub")
redis.call("DEL", rec)
redis.call("HSET", rec, "d", ARGV[1], "exp", ARGV[7])
if ARGV[10] ~= "" then redis.call("HSET", rec, "t", ARGV[10]) end
if ARGV[5] ~= "" then redis.call("HSET", rec, "sid", ARGV[5]) end
if ARGV[6] ~= "" then redis.call("HSET", rec, "sub", ARGV[6]) end
redis.call("EXPIRE", rec, ttl)
local function index(kind, value, previous)
  if previous and previous ~= value then redis.call("SREM", ARGV[8] .. kind .. previous, ARGV[4]) end
  if value == "" then return end
  local key = ARGV[8] .. kind .. value
  redis.call("SADD", key, ARGV[4])
  if redis.call("TTL", key) < ttl then redis.call("EXPIRE", key, ttl) end
end
index("sid:", ARGV[5], old[1])
index("sub:", ARGV[6], old[2])
return 1
`

// deleteScript removes one record and its index entries.
// KEYS[1] record; ARGV: id, prefix.
const deleteScript = `
local f = redis.call("HMGET", KEYS[1], "sid", "sub")
local n = redis.call("DEL", KEYS[1])
if f[1] then redis.call("SREM", ARGV[2] .. "sid:" .. f[1], ARGV[1]) end
if f[2] then redis.call("SREM", ARGV[2] .. "sub:" .. f[2], ARGV[1]) end
return n
`

// revokeScript removes every record an index set names, and the set.
// KEYS[1] index set; ARGV: prefix. Returns how many records existed.
const revokeScript = `
local n = 0
for _, id in ipairs(redis.call("SMEMBERS", KEYS[1])) do
  local rec = ARGV[1] .. "s:" .. id
  local f = redis.call("HMGET", rec, "sid", "sub")
  n = n + redis.call("DEL", rec)
  if f[1] then redis.call("SREM", ARGV[1] .. "sid:" .. f[1], id) end
  if f[2] then redis.call("SREM", ARGV[1] .. "sub:" .. f[2], id) end
end
redis.call("DEL", KEYS[1])
return n
`

// unlockScript deletes the lock only if it still holds our token.
const unlockScript = `
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0
`
