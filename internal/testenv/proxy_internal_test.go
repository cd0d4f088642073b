package testenv

import (
	"net"
	"strings"
	"testing"
)

// TestStart_RetriesWhenThePortIsTaken: the first attempt is configured on
// a port another listener holds (as when someone takes the picked port
// before nginx binds it); nginx fails to bind, and the harness starts it
// again on another port instead of failing the test.
func TestStart_RetriesWhenThePortIsTaken(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	attempts := 0
	p := StartNginx(t, NginxOptions{Server: "location / { return 200 ok; }", testHookAddr: func(addr string) string {
		if attempts++; attempts == 1 {
			return busy.Addr().String()
		}
		return addr
	}})
	if attempts != 2 {
		t.Fatalf("%d attempts, want 2", attempts)
	}
	if p.Addr == busy.Addr().String() || !strings.HasPrefix(p.URL, "http://127.0.0.1:") {
		t.Fatalf("started on %s", p.URL)
	}
}
