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
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

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
		cookie: idCookie{sealer: sealer, now: now},
		sealer: sealer,
		now:    now,
		prefix: prefix,
		save:   redis.NewScript(saveScript),
		del:    redis.NewScript(deleteScript),
		revoke: redis.NewScript(revokeScript),
		unlock: redis.NewScript(unlockScript),
	}
	return &RedisStore{gorillaStore: newGorillaStore(b, opts, now), b: b}
}

// NewRedisClient builds a client for rawURL (redis:// or rediss:// for
// TLS). password, when not empty, replaces the URL's (so that it can come
// from a Kubernetes Secret on its own). The client connects lazily and
// reconnects by itself: a Redis outage needs no restart.
func NewRedisClient(rawURL, password string) (*redis.Client, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the URL, password included
		}
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	if password != "" {
		opts.Password = password
	}
	// Fail fast: a request waiting on an unreachable Redis should get the
	// friendly 503 within a couple of seconds, not hang. Values from the
	// URL's query (dial_timeout=...) win.
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 2 * time.Second
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = time.Second
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = time.Second
	}
	if opts.PoolTimeout == 0 {
		opts.PoolTimeout = 2 * time.Second
	}
	if opts.MaxRetries == 0 {
		opts.MaxRetries = 1
	}
	if opts.DialerRetries == 0 {
		opts.DialerRetries = 1 // go-redis's default, 5 dials 100ms apart, makes each failing request wait ~1s
	}
	opts.ContextTimeoutEnabled = true
	// The maintenance-notification handshake is for Redis Cloud; a
	// self-hosted Redis answers it with an error on every new connection.
	opts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return redis.NewClient(opts), nil
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

// endedTTL is how long a back-channel logout is remembered against
// sign-ins still in flight: far longer than a callback takes.
const endedTTL = 10 * time.Minute

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

// redisBackend is the gorilla/sessions store underneath: its cookie
// carries the sealed ID, the record lives in Redis.
type redisBackend struct {
	client                    redis.UniversalClient
	cookie                    idCookie
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
	id, rotated, ok := b.cookie.id(r, name)
	if !ok {
		return gsess, nil
	}
	s, err := b.load(r.Context(), id)
	if err != nil || s == nil {
		return gsess, err
	}
	s.Reseal = s.Reseal || rotated
	gsess.ID, gsess.IsNew = id, false
	gsess.Values[sessionValue] = s
	return gsess, nil
}

// load returns the record's session, nil if there is none (or it is past
// its end by our clock, or does not open), or ErrUnavailable.
func (b *redisBackend) load(ctx context.Context, id string) (*Session, error) {
	vals, err := b.client.HMGet(ctx, b.prefix+"s:"+id, "d", "exp").Result()
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
			if err := b.del.Run(r.Context(), b.client, []string{b.prefix + "s:" + id}, id, b.prefix).Err(); err != nil {
				return unavailable(err)
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
	n, err := b.save.Run(ctx, b.client, []string{b.prefix + "s:" + s.ID},
		sealed, ttl, mode, s.ID, s.ProviderSID, s.Subject, end, b.prefix, s.loaded, s.TokenStamp(), started.UnixMilli()).Int()
	if err != nil {
		return unavailable(err)
	}
	switch n {
	case 0:
		return ErrNoSession
	case 3:
		return ErrLoggedOut
	}
	return nil
}

func (b *redisBackend) deleteIndexed(ctx context.Context, kind, value string) (int, error) {
	if value == "" {
		return 0, nil
	}
	// The index's sessions end, and the logout is remembered (ended:): a
	// sign-in of that provider session, or of that user from before now,
	// still in flight, is refused when it saves (saveScript).
	n, err := b.revoke.Run(ctx, b.client, []string{b.prefix + kind + value}, b.prefix,
		b.prefix+"ended:"+kind+value, b.now().UnixMilli(), int(endedTTL/time.Second)).Int()
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
// end (unix s), prefix, loaded token stamp, token stamp, sign-in start
// (unix ms). Returns 0 when an update finds no record, 2 when it finds
// newer tokens, 3 when a new session's provider session (or its user,
// since its sign-in started) was logged out meanwhile (nothing written).
const saveScript = `
local rec = KEYS[1]
local ttl = tonumber(ARGV[2])
if ARGV[3] == "new" then
  if ARGV[5] ~= "" and redis.call("EXISTS", ARGV[8] .. "ended:sid:" .. ARGV[5]) == 1 then return 3 end
  local ended = redis.call("GET", ARGV[8] .. "ended:sub:" .. ARGV[6])
  if ended and tonumber(ended) >= tonumber(ARGV[11]) then return 3 end
else
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

// revokeScript removes every record an index set names, and the set, and
// remembers the logout. KEYS[1] index set; ARGV: prefix, ended key, now
// (unix ms), its TTL (s). Returns how many records existed.
const revokeScript = `
local last = redis.call("GET", ARGV[2])
if not last or tonumber(last) < tonumber(ARGV[3]) then redis.call("SET", ARGV[2], ARGV[3], "EX", ARGV[4]) end
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
