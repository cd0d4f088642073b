package session_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// benchLabs starts a standalone Redis, a Sentinel set-up and a Cluster (no
// TLS, password only) side by side, for benchmarks that compare the modes
// in one run on the same machine.
func benchLabs(b *testing.B) map[string]session.RedisOptions {
	b.Helper()
	opts := testenv.LabOptions{AdminPassword: "bench-pw"}
	standalone, sentinel, cluster := testenv.StartLabs(b, opts)
	return map[string]session.RedisOptions{
		session.RedisStandalone: {URL: "redis://" + standalone.Nodes[0].Addr() + "/0", Password: "bench-pw"},
		session.RedisSentinel: {Mode: session.RedisSentinel, SentinelMaster: sentinel.Master, SentinelAddrs: sentinel.SentinelAddrs(),
			Password: "bench-pw"},
		session.RedisCluster: {Mode: session.RedisCluster, ClusterAddrs: cluster.NodeAddrs(), Password: "bench-pw"},
	}
}

var benchModes = []string{session.RedisStandalone, session.RedisSentinel, session.RedisCluster}

// BenchmarkRedisStore_Load is the session check every protected request
// pays (one HMGET, unsealing, decoding), from 8 goroutines, per mode.
// docs/PERFORMANCE.md compares the modes.
func BenchmarkRedisStore_Load(b *testing.B) {
	labs := benchLabs(b)
	for _, mode := range benchModes {
		b.Run(mode, func(b *testing.B) {
			client := newClient(b, labs[mode])
			st := session.NewRedisStore(client, mustSealer(b), session.CookieOptions{}, time.Now, "bench:")
			var cookies []*http.Cookie
			for i := range 256 {
				cookies = append(cookies, saveTo(b, st, sampleSession(time.Now(), "user-"+strconv.Itoa(i%32), "sid-"+strconv.Itoa(i))))
			}
			b.SetParallelism(4) // 8 goroutines on 2 cores: requests wait on Redis, as in a server
			cpu := testenv.StartCPU(b)
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, err := st.Load(requestWith(cookies[i%len(cookies)])); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
			cpu.Report()
		})
	}
}

// BenchmarkRedisStore_Save is the session a sign-in creates (the record
// and its two index entries), per mode, and with REDIS_MIN_REPLICAS_ACK=1:
// the difference is the cost of waiting for a replica.
func BenchmarkRedisStore_Save(b *testing.B) {
	labs := benchLabs(b)
	for _, mode := range benchModes {
		for _, ack := range []int{0, 1} {
			if mode == session.RedisStandalone && ack > 0 {
				continue // no replica
			}
			name := mode
			if ack > 0 {
				name += "+ack"
			}
			b.Run(name, func(b *testing.B) {
				client := newClient(b, labs[mode])
				st := session.NewRedisStore(client, mustSealer(b), session.CookieOptions{}, time.Now, "bench:", session.WithReplicaAck(ack, time.Second))
				b.SetParallelism(4)
				cpu := testenv.StartCPU(b)
				b.RunParallel(func(pb *testing.PB) {
					req := httptest.NewRequest(http.MethodGet, "/", nil)
					i := 0
					for pb.Next() {
						s := sampleSession(time.Now(), "user-"+strconv.Itoa(i%32), "sid-"+strconv.Itoa(i))
						if err := st.Save(httptest.NewRecorder(), req, s); err != nil {
							b.Error(err)
							return
						}
						i++
					}
				})
				cpu.Report()
			})
		}
	}
}
