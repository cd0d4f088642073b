package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

func withRedis(kv ...string) map[string]string {
	env := valid()
	env["SESSION_STORE"] = "redis"
	for i := 0; i+1 < len(kv); i += 2 {
		env[kv[i]] = kv[i+1]
	}
	return env
}

func TestLoad_RedisModes(t *testing.T) {
	t.Parallel()
	certs := testenv.NewTLSFiles(t)
	for _, tc := range []struct {
		name  string
		env   map[string]string
		check func(config.Config) bool
	}{
		{"standalone URL", withRedis("REDIS_URL", "redis://cache:6379/2"), func(c config.Config) bool {
			return c.Redis.Mode == config.RedisStandalone && c.RedisURL == "redis://cache:6379/2" && c.Redis.TLS == nil
		}},
		{"unix socket", withRedis("REDIS_URL", "unix:///run/redis/redis.sock?db=1"), func(c config.Config) bool {
			return c.Redis.TLS == nil
		}},
		{"rediss turns TLS on", withRedis("REDIS_URL", "rediss://cache:6380/0", "REDIS_TLS_CA_FILE", certs.CA), func(c config.Config) bool {
			return c.Redis.TLS != nil && c.Redis.TLS.RootCAs != nil && c.Redis.TLS.Certificates == nil
		}},
		{"sentinel with ACL users, mTLS", withRedis("REDIS_MODE", "Sentinel", "REDIS_SENTINEL_MASTER", "mymaster",
			"REDIS_SENTINEL_ADDRS", "s0:26379, s1:26379,s2:26379", "REDIS_SENTINEL_USERNAME", "sentinel-user", "REDIS_SENTINEL_PASSWORD", "spw",
			"REDIS_USERNAME", "gatehouse", "REDIS_PASSWORD", "pw", "REDIS_TLS", "true", "REDIS_TLS_CA_FILE", certs.CA,
			"REDIS_TLS_CERT_FILE", certs.ClientCert, "REDIS_TLS_KEY_FILE", certs.ClientKey, "REDIS_TLS_SERVER_NAME", "redis.internal",
			"REDIS_MIN_REPLICAS_ACK", "1", "REDIS_REPLICA_ACK_TIMEOUT", "250ms"), func(c config.Config) bool {
			r := c.Redis
			return r.Mode == config.RedisSentinel && r.SentinelMaster == "mymaster" && strings.Join(r.SentinelAddrs, ",") == "s0:26379,s1:26379,s2:26379" &&
				r.SentinelUsername == "sentinel-user" && r.SentinelPassword == "spw" && r.Username == "gatehouse" &&
				r.TLS != nil && len(r.TLS.Certificates) == 1 && r.TLS.ServerName == "redis.internal" &&
				r.MinReplicasAck == 1 && r.ReplicaAckTimeout == 250*time.Millisecond
		}},
		{"cluster", withRedis("REDIS_MODE", "cluster", "REDIS_CLUSTER_ADDRS", "[::1]:7000,10.0.0.2:7000"), func(c config.Config) bool {
			return c.Redis.Mode == config.RedisCluster && len(c.Redis.ClusterAddrs) == 2 && c.Redis.MinReplicasAck == 0
		}},
	} {
		c, err := load(tc.env, nil)
		if err != nil {
			t.Errorf("%s: Load() error = %v", tc.name, err)
			continue
		}
		if !tc.check(c) {
			t.Errorf("%s: unexpected Redis config %+v", tc.name, c.Redis)
		}
	}
}

func TestLoad_RedisProblemsNameTheirVariable(t *testing.T) {
	t.Parallel()
	certs := testenv.NewTLSFiles(t)
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	sentinel := []string{"REDIS_MODE", "sentinel", "REDIS_SENTINEL_MASTER", "m", "REDIS_SENTINEL_ADDRS", "s:26379"}
	cluster := []string{"REDIS_MODE", "cluster", "REDIS_CLUSTER_ADDRS", "n:7000"}
	plus := func(base []string, kv ...string) []string { return append(append([]string{}, base...), kv...) }
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{"REDIS_URL", "http://cache:6379"}, "REDIS_URL: must be a redis:// or rediss:// URL with a host, or unix://"},
		{[]string{"REDIS_URL", "unix://"}, "REDIS_URL: must be a redis:// or rediss://"},
		{[]string{"REDIS_URL", "redis://c:6379", "REDIS_MODE", "replicated"}, "REDIS_MODE: must be standalone, sentinel or cluster"},
		{[]string{"REDIS_URL", "redis://c:6379", "REDIS_SENTINEL_ADDRS", "s:26379"}, "REDIS_SENTINEL_ADDRS: is set but REDIS_MODE is standalone (it belongs to REDIS_MODE=sentinel)"},
		{[]string{"REDIS_URL", "redis://c:6379", "REDIS_CLUSTER_ADDRS", "n:7000"}, "REDIS_CLUSTER_ADDRS: is set but REDIS_MODE is standalone"},
		{plus(sentinel, "REDIS_URL", "redis://c:6379"), "REDIS_URL: is set but REDIS_MODE is sentinel (it belongs to REDIS_MODE=standalone)"},
		{[]string{"REDIS_MODE", "sentinel", "REDIS_SENTINEL_ADDRS", "s:26379"}, "REDIS_SENTINEL_MASTER: is required with REDIS_MODE=sentinel"},
		{[]string{"REDIS_MODE", "sentinel", "REDIS_SENTINEL_MASTER", "m"}, "REDIS_SENTINEL_ADDRS: is required"},
		{plus(sentinel, "REDIS_SENTINEL_ADDRS", "s:26379,sentinel-1"), `REDIS_SENTINEL_ADDRS: "sentinel-1" is not host:port`},
		{plus(sentinel, "REDIS_SENTINEL_USERNAME", "u"), "REDIS_SENTINEL_PASSWORD: is required with REDIS_SENTINEL_USERNAME"},
		{plus(sentinel, "REDIS_CLUSTER_ADDRS", "n:7000"), "REDIS_CLUSTER_ADDRS: is set but REDIS_MODE is sentinel"},
		{[]string{"REDIS_MODE", "cluster"}, "REDIS_CLUSTER_ADDRS: is required"},
		{plus(cluster, "REDIS_CLUSTER_ADDRS", "n:99999"), `REDIS_CLUSTER_ADDRS: "n:99999" is not host:port`},
		{plus(cluster, "REDIS_SENTINEL_MASTER", "m"), "REDIS_SENTINEL_MASTER: is set but REDIS_MODE is cluster"},
		{plus(cluster, "REDIS_USERNAME", "gatehouse"), "REDIS_PASSWORD: is required with REDIS_USERNAME"},
		{plus(cluster, "REDIS_TLS_CA_FILE", certs.CA), "REDIS_TLS_CA_FILE: is set but TLS is off: use a rediss:// REDIS_URL or REDIS_TLS=true"},
		{[]string{"REDIS_URL", "redis://c:6379", "REDIS_TLS_CERT_FILE", certs.ClientCert}, "REDIS_TLS_CERT_FILE: is set but TLS is off"},
		{[]string{"REDIS_URL", "rediss://c:6379", "REDIS_TLS", "false"}, "REDIS_TLS: is false but REDIS_URL is rediss://"},
		{[]string{"REDIS_URL", "unix:///r.sock", "REDIS_TLS", "true"}, "REDIS_TLS: is true but REDIS_URL is a unix socket"},
		{plus(cluster, "REDIS_TLS", "sometimes"), `REDIS_TLS: must be true or false, got "sometimes"`},
		{plus(cluster, "REDIS_TLS", "true", "REDIS_TLS_CA_FILE", "/nonexistent/ca.pem"), "REDIS_TLS_CA_FILE: cannot be read: file /nonexistent/ca.pem: no such file"},
		{plus(cluster, "REDIS_TLS", "true", "REDIS_TLS_CA_FILE", notPEM), "REDIS_TLS_CA_FILE: holds no PEM certificate"},
		{plus(cluster, "REDIS_TLS", "true", "REDIS_TLS_CERT_FILE", certs.ClientCert), "REDIS_TLS_KEY_FILE: is required with REDIS_TLS_CERT_FILE"},
		{plus(cluster, "REDIS_TLS", "true", "REDIS_TLS_KEY_FILE", certs.ClientKey), "REDIS_TLS_CERT_FILE: is required with REDIS_TLS_KEY_FILE"},
		{plus(cluster, "REDIS_TLS", "true", "REDIS_TLS_CERT_FILE", certs.ClientCert, "REDIS_TLS_KEY_FILE", certs.ServerKey), "REDIS_TLS_CERT_FILE: and REDIS_TLS_KEY_FILE do not load"},
		{plus(cluster, "REDIS_MIN_REPLICAS_ACK", "one"), "REDIS_MIN_REPLICAS_ACK: must be a whole number"},
		{plus(cluster, "REDIS_MIN_REPLICAS_ACK", "1", "REDIS_REPLICA_ACK_TIMEOUT", "0s"), "REDIS_REPLICA_ACK_TIMEOUT: must be more than 0 and at most 10s"},
		{plus(cluster, "REDIS_REPLICA_ACK_TIMEOUT", "soon"), "REDIS_REPLICA_ACK_TIMEOUT: must be a duration"},
	} {
		_, err := load(withRedis(tc.env...), nil)
		var p config.Problems
		if !errors.As(err, &p) || len(p) != 1 || !strings.HasPrefix(p[0], tc.want) {
			t.Errorf("%v: problems = %q, want exactly one starting with %q", tc.env, p, tc.want)
		}
	}
}

func TestLoad_RedisVariablesIgnoredWithoutRedisStore(t *testing.T) {
	t.Parallel()
	env := valid()
	env["REDIS_MODE"] = "bogus"
	env["REDIS_TLS_CA_FILE"] = "/nonexistent"
	if _, err := load(env, nil); err != nil {
		t.Fatalf("SESSION_STORE=cookie with stray REDIS_* variables: %v", err)
	}
}
