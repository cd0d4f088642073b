package config

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Redis modes (REDIS_MODE).
const (
	RedisStandalone = "standalone"
	RedisSentinel   = "sentinel"
	RedisCluster    = "cluster"
)

// Redis is how Gatehouse reaches Redis with SESSION_STORE=redis, beyond
// REDIS_URL, REDIS_PASSWORD and REDIS_KEY_PREFIX.
type Redis struct {
	Mode     string // RedisStandalone, RedisSentinel or RedisCluster
	Username string // ACL user for the data nodes, in every mode; empty: the URL's, else "default"

	SentinelMaster   string   // the name Sentinel monitors the primary under
	SentinelAddrs    []string // host:port of the sentinels
	SentinelUsername string   // ACL user for the sentinels, when they require one
	SentinelPassword string

	ClusterAddrs []string // host:port seeds; the rest of the cluster is discovered

	// TLS is the client's TLS configuration (CA, client certificate for
	// mTLS, server name); nil means plain TCP.
	TLS *tls.Config

	// MinReplicasAck > 0 makes every write that must survive a failover
	// (new session, new tokens, logout, back-channel revocation and its
	// replay marker) wait until that many replicas have it, for at most
	// ReplicaAckTimeout; otherwise the write fails and the user sees
	// "sessions temporarily unavailable" rather than a promise Redis may
	// not keep.
	MinReplicasAck    int
	ReplicaAckTimeout time.Duration
}

// redis validates the Redis variables (SESSION_STORE=redis only).
func (r raw) redis(bad func(string, string, ...any)) Redis {
	c := Redis{
		Mode:             strings.ToLower(strings.TrimSpace(r.RedisMode)),
		Username:         strings.TrimSpace(r.RedisUsername),
		SentinelMaster:   strings.TrimSpace(r.RedisSentinelMaster),
		SentinelUsername: strings.TrimSpace(r.RedisSentinelUsername),
		SentinelPassword: r.RedisSentinelPassword,
	}
	set := func(v string) bool { return strings.TrimSpace(v) != "" }
	notFor := func(name, value string) {
		if set(value) {
			bad(name, "is set but REDIS_MODE is %s (it belongs to REDIS_MODE=%s)", c.Mode, modeOf(name))
		}
	}
	scheme := ""
	switch c.Mode {
	case RedisStandalone:
		notFor("REDIS_SENTINEL_MASTER", r.RedisSentinelMaster)
		notFor("REDIS_SENTINEL_ADDRS", r.RedisSentinelAddrs)
		notFor("REDIS_SENTINEL_USERNAME", r.RedisSentinelUsername)
		notFor("REDIS_SENTINEL_PASSWORD", r.RedisSentinelPassword)
		notFor("REDIS_CLUSTER_ADDRS", r.RedisClusterAddrs)
		u, err := url.Parse(r.RedisURL)
		switch {
		case r.RedisURL == "":
			bad("REDIS_URL", "is required when SESSION_STORE=redis (redis://host:6379/0, rediss:// for TLS, unix:///path/redis.sock; or REDIS_MODE=sentinel or cluster)")
		case err != nil:
			bad("REDIS_URL", "is not a valid URL")
		case (u.Scheme == "redis" || u.Scheme == "rediss") && u.Host != "":
			scheme = u.Scheme
		case u.Scheme == "unix" && u.Path != "":
			scheme = u.Scheme
		default:
			bad("REDIS_URL", "must be a redis:// or rediss:// URL with a host, or unix:///path/to/redis.sock")
		}
	case RedisSentinel:
		notFor("REDIS_URL", r.RedisURL)
		notFor("REDIS_CLUSTER_ADDRS", r.RedisClusterAddrs)
		if c.SentinelMaster == "" {
			bad("REDIS_SENTINEL_MASTER", "is required with REDIS_MODE=sentinel: the master name the sentinels monitor (`sentinel monitor <name> ...`, often mymaster)")
		}
		c.SentinelAddrs = addrs(r.RedisSentinelAddrs, "REDIS_SENTINEL_ADDRS", "the sentinels, e.g. sentinel-0:26379,sentinel-1:26379,sentinel-2:26379", bad)
		if c.SentinelUsername != "" && r.RedisSentinelPassword == "" {
			bad("REDIS_SENTINEL_PASSWORD", "is required with REDIS_SENTINEL_USERNAME")
		}
	case RedisCluster:
		notFor("REDIS_URL", r.RedisURL)
		notFor("REDIS_SENTINEL_MASTER", r.RedisSentinelMaster)
		notFor("REDIS_SENTINEL_ADDRS", r.RedisSentinelAddrs)
		notFor("REDIS_SENTINEL_USERNAME", r.RedisSentinelUsername)
		notFor("REDIS_SENTINEL_PASSWORD", r.RedisSentinelPassword)
		c.ClusterAddrs = addrs(r.RedisClusterAddrs, "REDIS_CLUSTER_ADDRS", "one or more cluster nodes, e.g. redis-0:6379,redis-1:6379,redis-2:6379", bad)
	default:
		bad("REDIS_MODE", "must be standalone, sentinel or cluster, got %q", r.RedisMode)
		return c
	}
	if c.Username != "" && r.RedisPassword == "" {
		bad("REDIS_PASSWORD", "is required with REDIS_USERNAME (ACL users authenticate with a password)")
	}

	c.TLS = r.redisTLS(scheme, bad)

	c.MinReplicasAck = nonNegative(r.RedisMinReplicasAck, "REDIS_MIN_REPLICAS_ACK", bad)
	c.ReplicaAckTimeout = duration(r.RedisReplicaAckWait, "REDIS_REPLICA_ACK_TIMEOUT", bad)
	if c.MinReplicasAck > 0 && (c.ReplicaAckTimeout <= 0 || c.ReplicaAckTimeout > 10*time.Second) {
		bad("REDIS_REPLICA_ACK_TIMEOUT", "must be more than 0 and at most 10s while REDIS_MIN_REPLICAS_ACK is on, got %q", r.RedisReplicaAckWait)
	}
	return c
}

func modeOf(name string) string {
	switch {
	case strings.HasPrefix(name, "REDIS_SENTINEL_"):
		return RedisSentinel
	case strings.HasPrefix(name, "REDIS_CLUSTER_"):
		return RedisCluster
	}
	return RedisStandalone
}

// redisTLS is on with REDIS_TLS=true or a rediss:// URL.
func (r raw) redisTLS(scheme string, bad func(string, string, ...any)) *tls.Config {
	on := scheme == "rediss"
	if v := strings.TrimSpace(r.RedisTLS); v != "" {
		b, err := strconv.ParseBool(v)
		switch {
		case err != nil:
			bad("REDIS_TLS", "must be true or false, got %q", r.RedisTLS)
			return nil
		case !b && scheme == "rediss":
			bad("REDIS_TLS", "is false but REDIS_URL is rediss:// (TLS): use one or the other")
			return nil
		case b && scheme == "unix":
			bad("REDIS_TLS", "is true but REDIS_URL is a unix socket, which Redis serves without TLS")
			return nil
		}
		on = on || b
	}
	files := []struct{ name, value string }{
		{"REDIS_TLS_CA_FILE", r.RedisTLSCAFile}, {"REDIS_TLS_CERT_FILE", r.RedisTLSCertFile},
		{"REDIS_TLS_KEY_FILE", r.RedisTLSKeyFile}, {"REDIS_TLS_SERVER_NAME", r.RedisTLSServerName},
	}
	if !on {
		for _, f := range files {
			if strings.TrimSpace(f.value) != "" {
				bad(f.name, "is set but TLS is off: use a rediss:// REDIS_URL or REDIS_TLS=true")
			}
		}
		return nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: strings.TrimSpace(r.RedisTLSServerName)}
	if f := strings.TrimSpace(r.RedisTLSCAFile); f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			bad("REDIS_TLS_CA_FILE", "cannot be read: %v", pathError(err))
		} else {
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				bad("REDIS_TLS_CA_FILE", "holds no PEM certificate (%s)", f)
			}
		}
	}
	cert, key := strings.TrimSpace(r.RedisTLSCertFile), strings.TrimSpace(r.RedisTLSKeyFile)
	switch {
	case cert != "" && key == "":
		bad("REDIS_TLS_KEY_FILE", "is required with REDIS_TLS_CERT_FILE (the client certificate's private key)")
	case cert == "" && key != "":
		bad("REDIS_TLS_CERT_FILE", "is required with REDIS_TLS_KEY_FILE (the client certificate)")
	case cert != "":
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			bad("REDIS_TLS_CERT_FILE", "and REDIS_TLS_KEY_FILE do not load as a certificate and its key: %v", pathError(err))
		} else {
			cfg.Certificates = []tls.Certificate{pair}
		}
	}
	return cfg
}

// pathError drops the operation from an *os.PathError ("open x: no such
// file" reads better after the variable's name than "open x: open x: ...").
func pathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return &os.PathError{Op: "file", Path: pe.Path, Err: pe.Err}
	}
	return err
}

// addrs parses a comma- or space-separated list of host:port.
func addrs(list, name, example string, bad func(string, string, ...any)) []string {
	var out []string
	for _, a := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' }) {
		host, port, err := net.SplitHostPort(a)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			bad(name, "%q is not host:port", a)
			continue
		}
		out = append(out, a)
	}
	if len(out) == 0 && strings.TrimSpace(list) == "" {
		bad(name, "is required: %s", example)
	}
	return out
}
