package server_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// benchRedis starts a standalone Redis, a Sentinel set-up and a Cluster
// side by side and returns, per mode, how to point an app at it: the
// modes are compared in one run on the same machine.
func benchRedis(b *testing.B) map[string]func(*config.Config) {
	b.Helper()
	opts := testenv.LabOptions{AdminPassword: "bench-pw"}
	standalone, sentinel, cluster := testenv.StartLabs(b, opts)
	use := func(r config.Redis, url string) func(*config.Config) {
		return func(c *config.Config) {
			c.SessionStore, c.RedisURL, c.RedisPassword, c.RedisKeyPrefix, c.Redis = "redis", url, "bench-pw", "bench:", r
		}
	}
	return map[string]func(*config.Config){
		config.RedisStandalone: use(config.Redis{Mode: config.RedisStandalone}, "redis://"+standalone.Nodes[0].Addr()+"/0"),
		config.RedisSentinel:   use(config.Redis{Mode: config.RedisSentinel, SentinelMaster: sentinel.Master, SentinelAddrs: sentinel.SentinelAddrs()}, ""),
		config.RedisCluster:    use(config.Redis{Mode: config.RedisCluster, ClusterAddrs: cluster.NodeAddrs()}, ""),
	}
}

var benchModes = []string{config.RedisStandalone, config.RedisSentinel, config.RedisCluster}

// BenchmarkRedisCallback is the app's own work of a sign-in's callback
// (provider answers replayed, see BenchmarkCallback_OwnWork) with the
// session created in Redis, per mode.
func BenchmarkRedisCallback(b *testing.B) {
	modes := benchRedis(b)
	for _, mode := range benchModes {
		b.Run(mode, func(b *testing.B) { replayCallback(b, testenv.AppOptions{Modify: modes[mode]}) })
	}
}

// BenchmarkRedisSessionCheck is BenchmarkChain_ProfileTrivialPage with the
// session in Redis, per mode: the whole middleware chain and the session
// check every protected request pays, in front of a page that writes "ok".
func BenchmarkRedisSessionCheck(b *testing.B) {
	modes := benchRedis(b)
	for _, mode := range benchModes {
		b.Run(mode, func(b *testing.B) {
			app, req := signedIn(b, testenv.AppOptions{Modify: modes[mode]}, "/profile")
			h := app.HandlerWithProfilePage(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = io.WriteString(w, "ok")
			}))
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			cpu := testenv.StartCPU(b)
			for b.Loop() {
				w.reset()
				h.ServeHTTP(w, req)
				if w.status != http.StatusOK {
					b.Fatalf("GET /profile = %d", w.status)
				}
			}
			cpu.Report()
		})
	}
}
