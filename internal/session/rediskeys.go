package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Every key the Redis store writes, for prefix P:
//
//	P s:<id>      hash: the session record {d: sealed payload, exp, sid, sub, t}
//	P sid:<sid>   set: IDs of the sessions of one provider session
//	P sub:<sub>   set: IDs of one user's sessions
//	P lock:<id>   string: the session's refresh lock
//	P once:<key>  string: a replay marker (a used logout token)
//	P ended:sid:<sid>, P ended:sub:<sub>
//	              string: when a back-channel logout ended them (unix ms),
//	              kept endedTTL against sign-ins still in flight
const (
	kindRecord = "s:"
	kindSID    = "sid:"
	kindSub    = "sub:"
	kindLock   = "lock:"
	kindOnce   = "once:"
	kindEnded  = "ended:"
)

// key builds every key the store uses.
//
// No script, transaction or command touches two keys: a record and its
// index entries are written by separate single-key commands, so Redis
// Cluster may put every key in a slot of its own and nothing can fail with
// CROSSSLOT; the names need no hash tags, and they are the same in every
// mode (a rolling upgrade, or a move from one Redis to Sentinel, keeps
// every session). What the single multi-key script gave before is kept by
// ordering and idempotence instead:
//
//   - A new session's index entries are added in the same pipeline as its
//     record (standalone and Sentinel: before it, on one connection).
//   - Revocation deletes each record an index names and removes from the
//     indexes only the IDs whose record it deleted. An ID whose record is
//     not there (yet) stays, so a record written after the index entry, in
//     whatever order a cluster executes them, can always be found again.
//     Leftover IDs are harmless (the count is of records that existed) and
//     go with the set's TTL, which is at least its longest member's.
//   - Updates touch only the record and only if it still exists, so a
//     late save cannot revive a deleted or revoked session.
func (b *redisBackend) key(kind, value string) string { return b.prefix + kind + value }

// RedisStoreOption tunes a RedisStore.
type RedisStoreOption func(*redisBackend)

// WithReplicaAck makes every write that a failover must not lose wait until
// n replicas have it (Redis WAIT, at most timeout), and fail with
// ErrUnavailable otherwise: a new session, refreshed tokens (the provider
// has revoked the old ones), a logout or revocation, a logout token's
// replay marker. Touches (the idle timestamp) and locks do not wait.
// n = 0 waits for nothing.
func WithReplicaAck(n int, timeout time.Duration) RedisStoreOption {
	return func(b *redisBackend) { b.ack, b.ackTimeout = n, timeout }
}

// op is one single-key command of a write: a script, or a plain command.
type op struct {
	key    string
	script *redis.Script
	args   []any
	plain  func(ctx context.Context, p redis.Pipeliner) redis.Cmder
}

func scriptOp(s *redis.Script, key string, args ...any) op {
	return op{key: key, script: s, args: args}
}

func sremOp(key, member string) op {
	return op{key: key, plain: func(ctx context.Context, p redis.Pipeliner) redis.Cmder { return p.SRem(ctx, key, member) }}
}

// errNotAcknowledged: fewer replicas than required confirmed a write.
var errNotAcknowledged = errors.New("not acknowledged by enough replicas")

// run executes ops in one pipeline (ClusterClient splits it by node and
// follows MOVED and ASK). durable writes, with WithReplicaAck, are then
// confirmed with WAIT on the connection that made them, and fail unless
// enough replicas have them. Results are in the order of ops.
func (b *redisBackend) run(ctx context.Context, durable bool, ops ...op) ([]redis.Cmder, error) {
	if !durable || b.ack == 0 {
		if len(ops) == 1 && ops[0].script != nil {
			o := ops[0]
			cmd := o.script.Run(ctx, b.client, []string{o.key}, o.args...)
			return []redis.Cmder{cmd}, cmd.Err()
		}
		return b.exec(ctx, b.client, ops)
	}
	switch c := b.client.(type) {
	case *redis.ClusterClient:
		// A cluster pipeline sends a keyless command such as WAIT to any
		// primary: each primary gets its share of ops and its own WAIT.
		cmds, err := b.perPrimary(ctx, c, ops)
		if err != nil && !errors.Is(err, errNotAcknowledged) && ctx.Err() == nil {
			c.ReloadState(ctx) // a slot moved (failover, resharding): once more on the new map
			cmds, err = b.perPrimary(ctx, c, ops)
		}
		return cmds, err
	case *redis.Client:
		return b.acked(ctx, c, ops)
	}
	return nil, fmt.Errorf("replica acknowledgement needs a standalone, Sentinel or Cluster client, not %T", b.client)
}

// acked runs ops on one connection of c, then WAIT on it: WAIT counts the
// writes of its own connection. (Not in the same pipeline: a pipeline's
// replies must come within the read timeout, WAIT's may take longer.)
func (b *redisBackend) acked(ctx context.Context, c *redis.Client, ops []op) ([]redis.Cmder, error) {
	conn := c.Conn()
	defer conn.Close()
	cmds, err := b.exec(ctx, conn, ops)
	if err != nil {
		return cmds, err
	}
	n, err := conn.Wait(ctx, b.ack, b.ackTimeout).Result()
	if err != nil {
		return cmds, err
	}
	if n < int64(b.ack) {
		return cmds, fmt.Errorf("%w: %d of %d within %v", errNotAcknowledged, n, b.ack, b.ackTimeout)
	}
	return cmds, nil
}

// exec pipelines ops on c. Scripts go as EVALSHA; those a node answers
// with NOSCRIPT (a new primary after a failover has an empty script cache)
// go again as EVAL, and only those: the others have run.
func (b *redisBackend) exec(ctx context.Context, c interface{ Pipeline() redis.Pipeliner }, ops []op) ([]redis.Cmder, error) {
	cmds := make([]redis.Cmder, len(ops))
	pending := make([]int, len(ops))
	for i := range ops {
		pending[i] = i
	}
	for eval := false; ; eval = true {
		pipe := c.Pipeline()
		for _, i := range pending {
			o := ops[i]
			switch {
			case o.script == nil:
				cmds[i] = o.plain(ctx, pipe)
			case eval:
				cmds[i] = o.script.Eval(ctx, pipe, []string{o.key}, o.args...)
			default:
				cmds[i] = o.script.EvalSha(ctx, pipe, []string{o.key}, o.args...)
			}
		}
		_, err := pipe.Exec(ctx)
		var again []int
		for _, i := range pending {
			if redis.HasErrorPrefix(cmds[i].Err(), "NOSCRIPT") {
				again = append(again, i)
			}
		}
		if eval || len(again) == 0 {
			if err == nil {
				return cmds, nil
			}
			for _, c := range cmds { // the first failure of any round
				if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
					return cmds, err
				}
			}
			return cmds, nil
		}
		pending = again
	}
}

// perPrimary runs each primary's share of ops, with WAIT, concurrently.
func (b *redisBackend) perPrimary(ctx context.Context, cc *redis.ClusterClient, ops []op) ([]redis.Cmder, error) {
	type group struct {
		node *redis.Client
		idx  []int
	}
	groups := map[string]*group{}
	for i, o := range ops {
		node, err := cc.MasterForKey(ctx, o.key)
		if err != nil {
			return nil, err
		}
		g := groups[node.Options().Addr]
		if g == nil {
			g = &group{node: node}
			groups[node.Options().Addr] = g
		}
		g.idx = append(g.idx, i)
	}
	cmds := make([]redis.Cmder, len(ops))
	errs := make(chan error, len(groups))
	var wg sync.WaitGroup
	for _, g := range groups {
		wg.Go(func() {
			sub := make([]op, len(g.idx))
			for j, i := range g.idx {
				sub[j] = ops[i]
			}
			res, err := b.acked(ctx, g.node, sub)
			for j, i := range g.idx {
				if j < len(res) {
					cmds[i] = res[j]
				}
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return cmds, errors.Join(all...)
}

// indexOps add id to the sid and sub index sets, keeping each set's TTL
// at least ttl.
func (b *redisBackend) indexOps(id, sid, sub string, ttl int) []op {
	var ops []op
	if sid != "" {
		ops = append(ops, scriptOp(b.index, b.key(kindSID, sid), id, ttl))
	}
	if sub != "" {
		ops = append(ops, scriptOp(b.index, b.key(kindSub, sub), id, ttl))
	}
	return ops
}

// deleteRecords deletes the records of ids and then their index entries,
// and reports how many records existed. Removing index entries is
// housekeeping: a failure there leaves IDs that revocation skips.
func (b *redisBackend) deleteRecords(ctx context.Context, ids ...string) (int, error) {
	ops := make([]op, len(ids))
	for i, id := range ids {
		ops[i] = scriptOp(b.del, b.key(kindRecord, id))
	}
	cmds, err := b.run(ctx, true, ops...)
	if err != nil {
		return 0, unavailable(err)
	}
	n := 0
	var unindex []op
	for i, c := range cmds {
		deleted, sid, sub := deleteResult(c)
		if !deleted {
			continue
		}
		n++
		if sid != "" {
			unindex = append(unindex, sremOp(b.key(kindSID, sid), ids[i]))
		}
		if sub != "" {
			unindex = append(unindex, sremOp(b.key(kindSub, sub), ids[i]))
		}
	}
	if len(unindex) > 0 {
		_, _ = b.run(ctx, false, unindex...)
	}
	return n, nil
}

func deleteResult(c redis.Cmder) (deleted bool, sid, sub string) {
	cmd, ok := c.(*redis.Cmd)
	if !ok {
		return false, "", ""
	}
	res, err := cmd.Slice()
	if err != nil || len(res) != 3 {
		return false, "", ""
	}
	n, _ := res[0].(int64)
	sid, _ = res[1].(string)
	sub, _ = res[2].(string)
	return n == 1, sid, sub
}

// saveScript writes a record.
// KEYS[1] record; ARGV: payload, ttl (s), "new"|"update", sid, sub,
// end (unix s), loaded token stamp, token stamp. Returns {0} when an update
// finds no record, {2} when it finds newer tokens (nothing written), {3,
// old sid, old sub} when an update changed the record's sid or sub (the
// caller moves its index entries), else {1}.
const saveScript = `
local rec = KEYS[1]
if ARGV[3] ~= "new" then
  if redis.call("EXISTS", rec) == 0 then return {0} end
  local cur = redis.call("HGET", rec, "t")
  if cur and cur ~= ARGV[7] and cur ~= ARGV[8] then return {2} end
end
local old = redis.call("HMGET", rec, "sid", "sub")
redis.call("DEL", rec)
redis.call("HSET", rec, "d", ARGV[1], "exp", ARGV[6])
if ARGV[8] ~= "" then redis.call("HSET", rec, "t", ARGV[8]) end
if ARGV[4] ~= "" then redis.call("HSET", rec, "sid", ARGV[4]) end
if ARGV[5] ~= "" then redis.call("HSET", rec, "sub", ARGV[5]) end
redis.call("EXPIRE", rec, ARGV[2])
local oldSID, oldSub = old[1] or "", old[2] or ""
if ARGV[3] ~= "new" and (oldSID ~= ARGV[4] or oldSub ~= ARGV[5]) then return {3, oldSID, oldSub} end
return {1}
`

// indexScript adds a session ID to an index set whose TTL stays at least
// the session's. KEYS[1] index set; ARGV: id, ttl (s).
const indexScript = `
redis.call("SADD", KEYS[1], ARGV[1])
if redis.call("TTL", KEYS[1]) < tonumber(ARGV[2]) then redis.call("EXPIRE", KEYS[1], ARGV[2]) end
return 1
`

// deleteScript removes one record. KEYS[1] record. Returns {existed (0|1),
// its sid, its sub}.
const deleteScript = `
local f = redis.call("HMGET", KEYS[1], "sid", "sub")
local n = redis.call("DEL", KEYS[1])
return {n, f[1] or "", f[2] or ""}
`

// markScript remembers a back-channel logout: KEYS[1] its ended: key;
// ARGV: when (unix ms), TTL (s). A later mark is never replaced by an
// earlier one.
const markScript = `
local last = redis.call("GET", KEYS[1])
if not last or tonumber(last) < tonumber(ARGV[1]) then redis.call("SET", KEYS[1], ARGV[1], "EX", ARGV[2]) end
return 1
`

// unlockScript deletes the lock only if it still holds our token.
const unlockScript = `
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0
`
