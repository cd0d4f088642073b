package session

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Redis topologies (RedisOptions.Mode).
const (
	RedisStandalone = "standalone"
	RedisSentinel   = "sentinel"
	RedisCluster    = "cluster"
)

// RedisOptions say how to reach Redis. Every mode takes an ACL user and
// password and TLS (with a client certificate for mTLS).
type RedisOptions struct {
	Mode string // RedisStandalone (default), RedisSentinel or RedisCluster

	URL string // standalone: redis://, rediss:// or unix:// (user, password, db and query options inside)

	SentinelMaster   string
	SentinelAddrs    []string
	SentinelUsername string
	SentinelPassword string

	ClusterAddrs []string

	// Username and Password authenticate to the data nodes (AUTH user
	// pass; "default" user when Username is empty). Each, when set,
	// replaces the URL's.
	Username, Password string

	// TLS, when not nil, is used for every connection (sentinels, primary,
	// replicas, cluster nodes). For standalone it replaces the rediss://
	// URL's default (host-name check only).
	TLS *tls.Config
}

// NewRedisUniversalClient builds go-redis's own client for the mode: a
// Client (standalone), a FailoverClient that asks the sentinels for the
// primary and follows their +switch-master announcements, or a
// ClusterClient that follows MOVED and ASK. All of them connect lazily and
// reconnect by themselves: an outage needs no restart.
func NewRedisUniversalClient(o RedisOptions) (redis.UniversalClient, error) {
	switch o.Mode {
	case "", RedisStandalone:
		opts, err := redis.ParseURL(o.URL)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // url.Error quotes the URL, password included
			}
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		if o.Username != "" {
			opts.Username = o.Username
		}
		if o.Password != "" {
			opts.Password = o.Password
		}
		if o.TLS != nil {
			opts.TLSConfig = withServerName(o.TLS, opts.TLSConfig)
		}
		failFast(&opts.DialTimeout, &opts.ReadTimeout, &opts.WriteTimeout, &opts.PoolTimeout, &opts.MaxRetries, &opts.DialerRetries)
		opts.ContextTimeoutEnabled = true
		opts.MaintNotificationsConfig = noMaintNotifications()
		return redis.NewClient(opts), nil
	case RedisSentinel:
		opts := &redis.FailoverOptions{
			MasterName:       o.SentinelMaster,
			SentinelAddrs:    o.SentinelAddrs,
			SentinelUsername: o.SentinelUsername,
			SentinelPassword: o.SentinelPassword,
			Username:         o.Username,
			Password:         o.Password,
			TLSConfig:        o.TLS,
		}
		failFast(&opts.DialTimeout, &opts.ReadTimeout, &opts.WriteTimeout, &opts.PoolTimeout, &opts.MaxRetries, &opts.DialerRetries)
		opts.ContextTimeoutEnabled = true
		return redis.NewFailoverClient(opts), nil
	case RedisCluster:
		opts := &redis.ClusterOptions{
			Addrs:     o.ClusterAddrs,
			Username:  o.Username,
			Password:  o.Password,
			TLSConfig: o.TLS,
		}
		failFast(&opts.DialTimeout, &opts.ReadTimeout, &opts.WriteTimeout, &opts.PoolTimeout, &opts.MaxRetries, &opts.DialerRetries)
		opts.ContextTimeoutEnabled = true
		opts.MaintNotificationsConfig = noMaintNotifications()
		// go-redis learns a new slot map from MOVED and ASK, which a
		// crashed primary never sends: with the default 60 s interval its
		// slots stayed unreachable for up to a minute after its replica took
		// over. A node answers CLUSTER SLOTS in microseconds; one a second
		// per process (only while requests come) costs nothing.
		opts.ClusterStateReloadInterval = time.Second
		// Request policies fan keyless commands out to many nodes; the
		// store sends single-key commands only, and the policy lookup cost
		// a third of a session check (BenchmarkRedisStore_Load/cluster).
		opts.DisableRoutingPolicies = true
		c := redis.NewClusterClient(opts)
		c.AddHook(reloadOnFailure{c})
		return c, nil
	}
	return nil, fmt.Errorf("REDIS_MODE: unknown mode %q", o.Mode)
}

// failFast: a request waiting on an unreachable Redis should get the
// friendly 503 within a couple of seconds, not hang. Values already set
// (from the URL's query: dial_timeout=...) win.
func failFast(dial, read, write, pool *time.Duration, retries, dialRetries *int) {
	for _, d := range []struct {
		p *time.Duration
		v time.Duration
	}{{dial, 2 * time.Second}, {read, time.Second}, {write, time.Second}, {pool, 2 * time.Second}} {
		if *d.p == 0 {
			*d.p = d.v
		}
	}
	if *retries == 0 {
		*retries = 1
	}
	if *dialRetries == 0 {
		*dialRetries = 1 // go-redis's default, 5 dials 100ms apart, makes each failing request wait ~1s
	}
}

// noMaintNotifications: the maintenance-notification handshake is for
// Redis Cloud; a self-hosted Redis answers it with an error on every new
// connection.
func noMaintNotifications() *maintnotifications.Config {
	return &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
}

// withServerName keeps the URL's host as the name to verify when the
// configured TLS settings name none.
func withServerName(cfg, fromURL *tls.Config) *tls.Config {
	if cfg.ServerName != "" || fromURL == nil {
		return cfg
	}
	c := cfg.Clone()
	c.ServerName = fromURL.ServerName
	return c
}

// redisMode names client's topology.
func redisMode(client redis.UniversalClient) string {
	switch c := client.(type) {
	case *redis.ClusterClient:
		return RedisCluster
	case *redis.Client:
		if c.Options().Addr == "FailoverClient" {
			return RedisSentinel
		}
	}
	return RedisStandalone
}

// Topology says where a Redis store's data lives now (the readiness
// probe shows it).
type Topology struct {
	Mode string `json:"mode"`
	// Primary is the node that answered (standalone; Sentinel: the
	// primary the sentinels named), as the node sees its own address.
	Primary string `json:"primary,omitempty"`
	// Primaries are the cluster's primaries with their slot ranges.
	Primaries []string `json:"primaries,omitempty"`
}

// TopologyReporter is implemented by stores that can say where their data
// lives.
type TopologyReporter interface {
	Topology(ctx context.Context) (Topology, error)
}

// Topology asks Redis which node is primary: CLIENT INFO's laddr (the
// address the answering node accepted the connection on) for a single
// primary, CLUSTER SHARDS (Redis 7) for a cluster. Neither needs an
// administrator's ACL.
func (s *RedisStore) Topology(ctx context.Context) (Topology, error) {
	t := Topology{Mode: redisMode(s.b.client)}
	if cc, ok := s.b.client.(*redis.ClusterClient); ok {
		shards, err := cc.ClusterShards(ctx).Result()
		if err != nil {
			return t, unavailable(err)
		}
		for _, sh := range shards {
			var ranges []string
			for _, r := range sh.Slots {
				ranges = append(ranges, fmt.Sprintf("%d-%d", r.Start, r.End))
			}
			for _, n := range sh.Nodes {
				if n.Role != "master" || n.Health == "fail" || len(ranges) == 0 {
					continue
				}
				port := n.Port
				if port == 0 {
					port = n.TLSPort
				}
				t.Primaries = append(t.Primaries, net.JoinHostPort(n.IP, strconv.FormatInt(port, 10))+" slots "+strings.Join(ranges, ","))
			}
		}
		slices.Sort(t.Primaries)
		return t, nil
	}
	info, err := s.b.client.Do(ctx, "CLIENT", "INFO").Text()
	if err != nil {
		return t, unavailable(err)
	}
	for _, f := range strings.Fields(info) {
		if v, ok := strings.CutPrefix(f, "laddr="); ok {
			t.Primary = v
		}
	}
	return t, nil
}

// reloadOnFailure asks a ClusterClient to reload its slot map as soon as a
// command fails for want of a node (connection refused, CLUSTERDOWN): the
// map then shows the promoted replica within the reload's 200 ms cool-down
// instead of the next interval. go-redis coalesces the requests.
type reloadOnFailure struct{ c *redis.ClusterClient }

func (h reloadOnFailure) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reloadOnFailure) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.check(err)
		return err
	}
}

func (h reloadOnFailure) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.check(err)
		return err
	}
}

func (h reloadOnFailure) check(err error) {
	var ne net.Error
	if err != nil && (errors.As(err, &ne) || redis.HasErrorPrefix(err, "CLUSTERDOWN") || redis.HasErrorPrefix(err, "TRYAGAIN")) {
		h.c.ReloadState(context.Background())
	}
}
